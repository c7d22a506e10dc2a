/**
 * The TensorFlow.js local step: the mathematics of reference.ts (docs/model.md §4,
 * posterior.ts#LocalParams) for a whole batch at once, as matrix products in float32. The
 * covariate model is fused here; the response family's part comes from its `fused` hook
 * (lib/model/families/), and a family without one runs on the reference path over the batch's
 * float32 values (tested to agree with the float64 reference like every fused family).
 *
 * prepare() keeps only the rows themselves, in chunks of `chunkRows` rows (c rows each;
 * D = covariates, P = regression inputs):
 *
 *   xa = [x, 1]   (c, D + 1)   null when D = 0
 *   ub = [u, y]   (c, P + 1)
 *
 * D + P + 2 float32 values per row (92 bytes at D = 10, P = 11). Nothing per row is derived in
 * advance: the products of the rows are formed per chunk inside the local step and freed with it.
 * (The previous formulation kept the lower triangles of x xᵀ and u uᵀ as features, 181 values or
 * 724 bytes per row, and on wasm XNNPACK kept a packed copy of them: ~1.5 kB per row in all.)
 *
 * Each local step builds small parameter matrices from LocalParams in float64 on the host and
 * rounds them once to float32 (C_k C_kᵀ = Λ_k⁻¹ lower triangular, m̃_k = fround(m_k)):
 *
 *   ½ ν_k (x − m_k)ᵀ W_k (x − m_k)  = ‖[x, 1] F̃_k‖²,  F̃_k = [F_k; −m_kᵀ F_k] / √2       (PRML 10.64)
 *   ½ uᵀΛ_k⁻¹u + ½ E[τ_k](y − θ_kᵀu)² = ‖[u, y] G_k‖², G_k = [C_k/√2; 0 | q_k]           (PRML 10.3)
 *   q_k (y − θ_kᵀu)                 = [u, y] q_k,      q_k = √(E[τ_k]/2) [−θ_k; 1]
 *
 * so ln ρ (c × T) takes one matmul xa · [F̃_1 … F̃_T] (c × T·D) and one ub · [G_1 … G_T]
 * (c × T·(P+1)), each squared and summed per component block, plus the constants c_k: squares of
 * differences throughout, no expanded quadratic form. Then r = softmax and the row's log-sum-exp.
 * The statistics are sums over rows, Σ_n a_n b_nᵀ = Aᵀ·B, formed with the rows along the columns
 * of the left operand (see Backends), from temporaries built in that orientation:
 *
 *   N_k                 = Σ_n r
 *   Σ w u uᵀ            = (u ⊗ u)ᵀ · w            (P², T)        w the family's: r, or 2 r λ(ξ) (bernoulli)
 *   Σ v [u, y]          = ubᵀ · v                 (P+1, T)       v the family's:
 *                                                                  r q e, e = y − θᵀu (gaussian), r (y − ½) (bernoulli)
 *   Σ r (q e)²          = column sums of r ⊙ (q e)²               gaussian's `ee`
 *   Σ r (x − m̃_k)[x, 1]ᵀ = [r_k ⊙ (x − m̃_k)]_kᵀ · xa (T·D, D+1)  the T·D rows built transposed,
 *                                                                 by broadcasting over (T, D, c)
 *
 * and the host turns them into the raw moments of spec.ts in float64, summed over chunks:
 * - Covariates, centred at m̃_k: with S_c = Σ r (x − m̃) (the column of ones) and
 *   A = Σ r (x − m̃) xᵀ − S_c m̃ᵀ = Σ r (x − m̃)(x − m̃)ᵀ (symmetrized),
 *   Σ r x = S_c + N m̃,  Σ r x xᵀ = A + m̃ S_cᵀ + S_c m̃ᵀ + N m̃ m̃ᵀ (uncenterCovariates).
 *   Why: W_k⁻¹ = Ψ_k − β_k m_k m_kᵀ is a small difference of large raw moments for a tight cluster
 *   away from the origin, which float32 raw moments lose to cancellation (test/kernel.test.ts:
 *   sd 0.02 at ±3, raw float32 moments miss W⁻¹ by 7e-3 relative, these by 8e-7). Centring one
 *   factor is enough: the terms r (x − m̃) xᵀ and their partial sums are of the order of the
 *   result, and an error in S_c cancels between Σ r x xᵀ and β m mᵀ to first order. Centring
 *   both (one product per component) measured ~9× slower on wasm, for no accuracy the tests see.
 *   u uᵀ needs no centring: Λ_k is used as is.
 * - The response's syu (and syy) from Σ v [u, y] and `ee` by the family's `finish`; gaussian forms
 *   Σ r y u, Σ r y² from the residual statistics (families/gaussian.ts uncenterResponse), for the
 *   same reason (the residual sum of squares behind the noise rate b_k).
 *
 * A family's fused hook (families/family.ts FusedResponse) gives qu_k, the scale of C_k in G_k and
 * its constant, then per chunk its term of ln ρ from lin = ub · qu and quad = ‖ub G_k‖² (y is
 * column P of ub) and its weights w, v. Bernoulli (Jaakkola–Jordan, PRML 10.6):
 * G_k = [C_k; 0 | θ_k; 0] gives ξ² = uᵀ Λ⁻¹ u + (θᵀ u)² (10.163) and q_k = [θ_k; 0] gives θᵀu.
 *
 * Float32 choices (bounded against reference.ts in test/kernel.test.ts):
 * - The residual and the covariate quadratic form are squares of differences, not expanded into
 *   xᵀAx − 2xᵀAm + mᵀAm: the expanded form loses |A|·|x|²·ε32 to cancellation. On a tight fit
 *   (E[τ] up to 1.4e4, ν W up to 590; float32 emulated) the largest error in ln ρ of a component
 *   within 50 nats was 4e-3 expanded vs 2e-5 direct for the residual term, 1.4e-4 vs 6e-6 for the
 *   covariate term. The spread uᵀΛ⁻¹u is a sum of squares too.
 * - Rows go in chunks (default 4096): float32 sums run over at most that many rows, the chunks
 *   are added in float64 on the host, and the per-chunk temporaries stay ~15 MB (D = 10, T = 20).
 * - r = tf.softmax (on wasm XNNPACK's, with a vectorized exp: r and the log-sum-exp in half the
 *   time of max, sub, exp, sum, div, log), and
 *   logsumexp_k ln ρ_nk = max_k ln ρ_nk − ln max_k r_nk: the largest r_nk is exp(max − logsumexp)
 *   ≥ 1/T, so its logarithm is accurate. Σ_n of it is summed in float64 on the host. The
 *   constants c_k reach the kernel rounded to float32; the host adds Σ_k N_k (c_k − fround(c_k)),
 *   that rounding's exact first-order effect on the sum (∂ logsumexp_n / ∂ c_k = r_nk).
 * - Far components have large quadratic forms; their r underflows to 0, as in the reference.
 *
 * Backends (bench/kernel.ts --alternatives): on `wasm` only a plain A·B product of rank-2 tensors
 * reaches XNNPACK; a transposed operand or a rank-3 (batched) product falls back to a scalar loop
 * (measured 9× and 160× slower). XNNPACK treats B as "weights": it packs B (a reordered, padded
 * copy) and keeps the packed copy for as long as the B tensor lives. Hence, over the rows of a chunk:
 * - B is never a prepared tensor, or every cached batch would carry a second, padded copy of its
 *   rows in the wasm heap (test/kernel.test.ts checks the heap); [x, 1] goes in as a fresh copy.
 * - B is the narrow operand (≤ T columns per row): packing a wide temporary (c × T·D) took 5–14 ms
 *   against ~1 ms for the product, and transposing one ~8 ms; so the wide operands are built
 *   already transposed (T·D × c, P² × c), rows along the contiguous dimension, where broadcasting
 *   is cheap too.
 * - Reductions over components (block sums, softmax) stay in the row layout (c × T·…), where
 *   tf.sum runs along the last axis without a transpose.
 * The other backends take the same products (they cache nothing; cpu broadcasts are slow, but it
 * is slower than the reference either way).
 *
 * Categorical covariates (lib/model/covariates/) are not matrix products: their term of ln ρ is a
 * lookup of E[ln φ_kjl] by each row's codes, and their statistics counts of r by code. Both run on
 * the host in float64 from the batch's codes (kept as an Int32Array, J values per row), the term
 * rounded once to float32 and added to ln ρ before the softmax, the counts from the chunk's
 * float32 r (downloaded only then). A model without categorical covariates does none of it.
 *
 * Rows with a missing numeric covariate (NaN in x; docs/model.md §18) have no fused form: their
 * term integrates x_m out per row and component (lib/kernel/missing.ts). prepare() moves them to a
 * float64 side batch (their float32 values widened, as a family without a fused path gets them),
 * which the reference step takes; the complete rows go into the chunks as before, and the two
 * results are added (responsibilities put back in row order). A batch without a missing cell has
 * no side batch and runs exactly the code it ran before; a missing categorical value needs none
 * (its term is dropped in the host-side lookup).
 */
import * as tf from '@tensorflow/tfjs-core';
import { covariateFactorsOf } from '../model/covariates/index.js';
import { familyOf } from '../model/families/index.js';
import type { FusedChunk, FusedResponse } from '../model/families/family.js';
import type { LocalParams } from '../model/posterior.js';
import { layoutOf } from '../model/spec.js';
import { InternalError } from '../errors.js';
import { BackendUnavailableError } from './backend.js';
import { rowsOf, rowsWithMissing } from './batch.js';
import { referenceKernel } from './reference.js';
import type { Batch, Kernel, LocalStepOptions, LocalStepResult } from './types.js';

/** TensorFlow.js backends the kernel runs on (`tensorflow` is @tensorflow/tfjs-node). */
export type TfjsBackendName = 'tensorflow' | 'wasm' | 'cpu';

/** One chunk of rows as float32 tensors (module comment). */
export interface PreparedChunk {
  rows: number;
  /** [x, 1], (rows, D + 1); null when D = 0. */
  xa: tf.Tensor2D | null;
  /** [u, y], (rows, P + 1). */
  ub: tf.Tensor2D;
  /** The offset o, (rows, 1), when the batch has one. */
  offset: tf.Tensor2D | null;
  /** A family's rowConstant of these rows, by family name, once computed. */
  constants?: Map<string, number>;
}

/** A batch as the tfjs kernel holds it; release() frees the tensors. */
export interface PreparedTensors {
  /** The backend the tensors live on. */
  backend: TfjsBackendName;
  n: number;
  /** Columns of x in the batch (0 in conditional-only mode). */
  D: number;
  P: number;
  chunks: PreparedChunk[];
  /** The batch's categorical codes (Batch.categories), (n, J), or null. */
  categories: Int32Array | null;
  /**
   * Rows with a missing numeric covariate, taken by the reference step (module comment): their
   * indices in the batch, the indices of the chunks' rows, and the rows themselves; null when none.
   */
  missing: { rows: number[]; complete: number[]; batch: Batch } | null;
  /** False after release(). */
  live: boolean;
}

/** Tuning knobs, for the benchmark; the defaults are the measured best. */
export interface TfjsKernelOptions {
  /** Rows per chunk. @default 4096 */
  chunkRows?: number;
}

const DEFAULT_CHUNK_ROWS = 4096;

/**
 * A TensorFlow.js kernel on `backendName`, which must already be initialized (backend.ts#loadKernel
 * does that). TensorFlow.js has one active backend per process: each call makes this kernel's
 * backend the active one (synchronous for an initialized backend), so kernels on different
 * backends can be used side by side, each with the batches it prepared.
 */
export function createTfjsKernel(backendName: TfjsBackendName, options: TfjsKernelOptions = {}): Kernel<PreparedTensors> {
  const chunkRows = options.chunkRows ?? DEFAULT_CHUNK_ROWS;
  if (!Number.isInteger(chunkRows) || chunkRows < 1)
    throw new RangeError(`createTfjsKernel: chunkRows must be a positive integer, got ${chunkRows}`);
  const name = `tfjs-${backendName}`;
  // On wasm a tensor used as the right operand B of a matmul gets a packed copy cached by XNNPACK
  // for the tensor's lifetime; a prepared tensor goes there only as a temporary copy (module comment).
  const temporary =
    backendName === 'wasm' ? (t: tf.Tensor2D) => tf.add(t, 0) as tf.Tensor2D : (t: tf.Tensor2D) => t;

  return {
    name,

    prepare(batch: Batch | Batch<Float32Array>): PreparedTensors {
      const { n } = batch;
      const D = n > 0 ? batch.x.length / n : 0;
      const P = n > 0 ? batch.u.length / n : 0;
      if (!Number.isInteger(n) || n < 0 || !Number.isInteger(D) || !Number.isInteger(P) || batch.y.length !== n)
        throw new RangeError(
          `${name}: inconsistent batch: n = ${n}, x has ${batch.x.length} values, u ${batch.u.length}, y ${batch.y.length}`,
        );
      activateBackend(backendName);
      const incomplete = rowsWithMissing(batch);
      let missing: PreparedTensors['missing'] = null;
      let fusedRows = batch;
      if (incomplete.length > 0) {
        const isMissing = new Set(incomplete);
        const complete = Array.from({ length: n }, (_, i) => i).filter((i) => !isMissing.has(i));
        missing = { rows: incomplete, complete, batch: widened(rowsOf(batch, incomplete)) };
        fusedRows = rowsOf(batch, complete);
      }
      const chunks: PreparedChunk[] = [];
      try {
        for (let start = 0; start < fusedRows.n; start += chunkRows)
          chunks.push(prepareChunk(fusedRows, start, Math.min(fusedRows.n, start + chunkRows), D, P));
      } catch (error) {
        for (const c of chunks) disposeChunk(c);
        throw error;
      }
      const categories = fusedRows.categories ? Int32Array.from(fusedRows.categories) : null;
      return { backend: backendName, n: fusedRows.n, D, P, chunks, categories, missing, live: true };
    },

    release(prepared: PreparedTensors): void {
      if (!prepared.live) return;
      for (const c of prepared.chunks) disposeChunk(c);
      prepared.chunks = [];
      prepared.live = false;
    },

    localStep(params: LocalParams, prepared: PreparedTensors, options: LocalStepOptions = {}): LocalStepResult {
      if (!prepared.missing) return fusedStep(params, prepared, options);
      // Complete rows fused, rows with a missing covariate on the reference path (module comment).
      const { rows, complete, batch } = prepared.missing;
      const fused = fusedStep(params, prepared, options);
      const side = referenceKernel.localStep(params, batch, options);
      const { T } = params.spec;
      for (let i = 0; i < fused.stats.length; i++) fused.stats[i] += side.stats[i];
      let responsibilities: Float64Array | undefined;
      if (options.responsibilities) {
        responsibilities = new Float64Array((rows.length + complete.length) * T);
        complete.forEach((row, i) => responsibilities!.set(fused.responsibilities!.subarray(i * T, (i + 1) * T), row * T));
        rows.forEach((row, i) => responsibilities!.set(side.responsibilities!.subarray(i * T, (i + 1) * T), row * T));
      }
      return { stats: fused.stats, logLik: fused.logLik + side.logLik, responsibilities };
    },
  };

  function fusedStep(params: LocalParams, prepared: PreparedTensors, options: LocalStepOptions): LocalStepResult {
    const { spec } = params;
    const { T, P } = spec;
    const D = spec.covariateModel ? spec.D : 0;
    if (!prepared.live) throw new InternalError(`${name}: localStep on a released batch`);
    if (prepared.backend !== backendName)
      throw new InternalError(`${name}: the batch was prepared by the tfjs-${prepared.backend} kernel`);
    if (prepared.n > 0 && (prepared.P !== P || (D > 0 && prepared.D !== D)))
      throw new RangeError(
        `${name}: the batch has D = ${prepared.D}, P = ${prepared.P}; the model expects D = ${D}, P = ${P}`,
      );
    const layout = layoutOf(spec);
    if (prepared.n === 0)
      return {
        stats: new Float64Array(layout.length),
        logLik: 0,
        responsibilities: options.responsibilities ? new Float64Array(0) : undefined,
      };
    activateBackend(backendName);
    const fused = familyOf(spec.family).fused;
    if (!fused) return referenceKernel.localStep(params, batchOf(prepared), options);
    const P1 = P + 1;
    const host = hostParameters(params, D, fused);
    const resp = options.responsibilities ? new Float64Array(prepared.n * T) : undefined;
    const factors = covariateFactorsOf(spec);
    const J = spec.levels?.length ?? 0;
    const codes = prepared.categories;
    if (factors.length > 0 && !codes) throw new RangeError(`${name}: the model has ${J} categorical covariates; the batch has none`);
    const factorStats = factors.length > 0 ? new Float64Array(layout.length) : null;
    const factorBlocks = factors.map((f) => layout.blocks.find((b) => b.name === f.block(spec)!.name)!);
    // Chunk results summed in float64 (module comment).
    const sumN = new Float64Array(T);
    const sumUU = new Float64Array(P * P * T); // Σ w u uᵀ, (P², T)
    const sumE = new Float64Array(P1 * T); // Σ v [u, y], (P+1, T)
    const sumEE = new Float64Array(T); // Σ ee (gaussian: Σ r (q e)²)
    const sumX = new Float64Array(T * D * (D + 1)); // Σ r (x − m̃_k) [x, 1]ᵀ, (T·D, D+1)
    let logLik = 0;

    // The parameter matrices, created once per local step and shared by the chunks (on wasm,
    // XNNPACK packs each once).
    const w8: tf.Tensor[] = [];
    const param = <R extends tf.Rank>(values: Float32Array, shape: number[]): tf.Tensor<R> => {
      const t = tf.tensor(values, shape);
      w8.push(t);
      return t as tf.Tensor<R>;
    };
    try {
      const fs = D > 0 ? param<tf.Rank.R2>(host.fs, [D + 1, T * D]) : null;
      const meanT = D > 0 ? param<tf.Rank.R3>(host.mean32, [T, D, 1]) : null; // m̃_k as (T, D, 1)
      const qu = param<tf.Rank.R2>(host.qu, [P1, T]);
      const gu = param<tf.Rank.R2>(host.gu, [P1, T * P1]);
      const bias = param<tf.Rank.R2>(host.bias32, [1, T]);
      let row = 0;
      for (const chunk of prepared.chunks) {
        const c = chunk.rows;
        const ub = chunk.ub;
        logLik += rowConstant(chunk, P, spec.family, fused);
        // The factors' term of ln ρ, (c, T), on the host (module comment).
        let factorTerm: Float32Array | null = null;
        if (factorStats) {
          factorTerm = new Float32Array(c * T);
          for (let i = 0; i < c; i++)
            for (let k = 0; k < T; k++) {
              let s = 0;
              for (let f = 0; f < factors.length; f++) s += factors[f].logLik(spec, params.factors[f], k, codes!, (row + i) * J);
              factorTerm[i * T + k] = s;
            }
        }
        const outs = tf.tidy(() => {
          const lin = tf.matMul(ub, qu) as tf.Tensor2D; // gaussian q_k (y − θ_kᵀu); bernoulli θ_kᵀu; (c, T)
          // gaussian ½ uᵀΛ⁻¹u + q²(y − θᵀu)²; bernoulli ξ² = uᵀΛ⁻¹u + (θᵀu)²
          const quad = tf.sum(tf.reshape(tf.square(tf.matMul(ub, gu)), [c, T, P1]), 2) as tf.Tensor2D;
          let y: tf.Tensor2D | undefined;
          const inputs: FusedChunk = {
            lin,
            quad,
            get y() {
              return (y ??= tf.slice(ub, [0, P], [c, 1]));
            },
            offset: chunk.offset,
            bias,
          };
          const terms = fused.chunk(tf, inputs);
          let lnRho = terms.lnRho;
          if (D > 0) {
            const z = tf.matMul(chunk.xa!, fs!); // (c, T·D)
            lnRho = tf.sub(lnRho, tf.sum(tf.reshape(tf.square(z), [c, T, D]), 2));
          }
          if (factorTerm) lnRho = tf.add(lnRho, tf.tensor2d(factorTerm, [c, T]));
          // r = softmax (XNNPACK's on wasm); logsumexp = max − ln max_k r, since the largest r_nk
          // is exp(max − logsumexp) (≥ 1/T, so its logarithm is accurate).
          const r = tf.softmax(lnRho) as tf.Tensor2D;
          const lse = tf.sub(tf.max(lnRho, 1), tf.log(tf.max(r, 1)));
          // The sums over rows, as A·B with the rows along A's columns and B a narrow temporary
          // (module comment: never a prepared tensor as B on wasm).
          const ubT = tf.transpose(ub);
          const uT = tf.slice(ubT, [0, 0], [P, c]);
          const uuT = tf.reshape(tf.mul(tf.reshape(uT, [P, 1, c]), tf.reshape(uT, [1, P, c])), [P * P, c]) as tf.Tensor2D;
          const { w, v, ee } = terms.weights(r);
          const out: Record<string, tf.Tensor> = { lse, uu: tf.matMul(uuT, w) }; // Σ w u uᵀ, (P², T)
          out.e = tf.matMul(ubT, v); // Σ v [u, y], (P+1, T)
          if (ee) out.ee = ee;
          if (D > 0) {
            const xa = chunk.xa!;
            const xT = tf.reshape(tf.slice(tf.transpose(xa), [0, 0], [D, c]), [1, D, c]);
            const rT = tf.transpose(r);
            out.n = tf.sum(rT, 1);
            // r_k ⊙ (x − m̃_k) for all k, (T·D, c)
            const weightedT = tf.reshape(tf.mul(tf.sub(xT, meanT!), tf.reshape(rT, [T, 1, c])), [T * D, c]) as tf.Tensor2D;
            out.x = tf.matMul(weightedT, temporary(xa)); // (T·D, D+1)
          } else {
            out.n = tf.sum(r, 0);
          }
          if (options.responsibilities || factorStats) out.r = r;
          return out;
        });
        try {
          const lse = outs.lse.dataSync();
          let s = 0;
          for (let i = 0; i < c; i++) s += lse[i];
          logLik += s;
          addInto(sumN, outs.n.dataSync());
          addInto(sumUU, outs.uu.dataSync());
          addInto(sumE, outs.e.dataSync());
          if (outs.ee) addInto(sumEE, outs.ee.dataSync());
          if (D > 0) addInto(sumX, outs.x.dataSync());
          if (resp || factorStats) {
            const r = outs.r.dataSync();
            if (resp) resp.set(r, row * T);
            if (factorStats)
              for (let i = 0; i < c; i++)
                for (let k = 0; k < T; k++) {
                  const rk = r[i * T + k];
                  if (rk === 0) continue;
                  for (let f = 0; f < factors.length; f++)
                    factors[f].accumulate(spec, codes!, (row + i) * J, rk, factorStats, factorBlocks[f].offset + k * factorBlocks[f].width);
                }
          }
        } finally {
          tf.dispose(outs);
        }
        row += c;
      }
    } finally {
      for (const t of w8) t.dispose();
    }

    const stats = new Float64Array(layout.length);
    for (let k = 0; k < T; k++) {
      stats[layout.count + k] = sumN[k];
      if (D > 0) uncenterCovariates(host.mean32, k, T, D, sumN[k], sumX, stats, layout);
      const uu = layout.suu + k * P * P;
      for (let i = 0; i < P * P; i++) stats[uu + i] = sumUU[i * T + k];
      fused.finish(host.qu, k, T, P, sumE, sumEE[k], stats, layout);
      logLik += stats[layout.count + k] * host.biasRounding[k];
    }
    for (const { offset, width } of factorBlocks) stats.set(factorStats!.subarray(offset, offset + T * width), offset);
    return { stats, logLik, responsibilities: resp };
  }
}

/**
 * Σ r x and Σ r x xᵀ of component k from its centred sums, in float64 (module comment). `sumX` is
 * (T·D, D+1): row k·D + j holds Σ r (x_j − m̃_kj) x_i in column i < D and S_c,j = Σ r (x_j − m̃_kj)
 * in column D.
 */
function uncenterCovariates(
  mean32: Float32Array,
  k: number,
  T: number,
  D: number,
  count: number,
  sumX: Float64Array,
  stats: Float64Array,
  layout: ReturnType<typeof layoutOf>,
): void {
  const m = mean32.subarray(k * D, (k + 1) * D);
  const at = (j: number, i: number) => sumX[(k * D + j) * (D + 1) + i];
  const sc = (j: number) => at(j, D);
  // A = Σ r (x − m̃) xᵀ − S_c m̃ᵀ = Σ r (x − m̃)(x − m̃)ᵀ
  const a = (j: number, i: number) => at(j, i) - sc(j) * m[i];
  const sx = layout.sx + k * D;
  const sxx = layout.sxx + k * D * D;
  for (let i = 0; i < D; i++) {
    stats[sx + i] = sc(i) + count * m[i];
    for (let j = 0; j <= i; j++) {
      const v = 0.5 * (a(i, j) + a(j, i)) + m[i] * sc(j) + sc(i) * m[j] + count * m[i] * m[j];
      stats[sxx + i * D + j] = v;
      stats[sxx + j * D + i] = v;
    }
  }
}

/**
 * The batch back from its tensors (float32 values in float64 arrays), for a family without a fused
 * path: the reference local step runs on it.
 */
function batchOf(prepared: PreparedTensors): Batch {
  const { n, D, P } = prepared;
  const x = new Float64Array(n * D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  const offset = prepared.chunks[0]?.offset ? new Float64Array(n) : undefined;
  let row = 0;
  for (const chunk of prepared.chunks) {
    const ub = chunk.ub.dataSync();
    const xa = chunk.xa?.dataSync();
    if (offset) offset.set(chunk.offset!.dataSync(), row);
    for (let r = 0; r < chunk.rows; r++, row++) {
      for (let i = 0; i < P; i++) u[row * P + i] = ub[r * (P + 1) + i];
      y[row] = ub[r * (P + 1) + P];
      if (xa) for (let i = 0; i < D; i++) x[row * D + i] = xa[r * (D + 1) + i];
    }
  }
  const categories = prepared.categories ? { categories: prepared.categories } : {};
  return offset ? { n, x, u, y, offset, ...categories } : { n, x, u, y, ...categories };
}

/** A float32 batch's values in float64 arrays (the same numbers), for the reference step. */
function widened(batch: Batch | Batch<Float32Array>): Batch {
  if (batch.y instanceof Float64Array) return batch as Batch;
  const wide = (v: Float32Array | Float64Array) => Float64Array.from(v);
  return { ...batch, x: wide(batch.x), u: wide(batch.u), y: wide(batch.y), ...(batch.offset ? { offset: wide(batch.offset) } : {}) } as Batch;
}

function addInto(acc: Float64Array, v: ArrayLike<number>): void {
  for (let i = 0; i < acc.length; i++) acc[i] += v[i];
}

function disposeChunk(c: PreparedChunk): void {
  c.xa?.dispose();
  c.ub.dispose();
  c.offset?.dispose();
}

/** Σ over the chunk's rows of the family's terms that do not depend on k (float64, computed once per chunk). */
function rowConstant(chunk: PreparedChunk, P: number, family: string, fused: FusedResponse): number {
  if (!fused.rowConstant) return 0;
  chunk.constants ??= new Map();
  let value = chunk.constants.get(family);
  if (value === undefined) {
    const y = tf.tidy(() => tf.slice(chunk.ub, [0, P], [chunk.rows, 1]));
    try {
      value = fused.rowConstant(y.dataSync() as Float32Array, chunk.offset ? (chunk.offset.dataSync() as Float32Array) : null);
    } finally {
      y.dispose();
    }
    chunk.constants.set(family, value);
  }
  return value;
}

/** Rows [start, end) as the float32 tensors xa = [x, 1] and ub = [u, y] (module comment). */
function prepareChunk(batch: Batch | Batch<Float32Array>, start: number, end: number, D: number, P: number): PreparedChunk {
  const c = end - start;
  const xa = D > 0 ? new Float32Array(c * (D + 1)) : null;
  const ub = new Float32Array(c * (P + 1));
  for (let r = 0; r < c; r++) {
    if (xa) {
      const xo = (start + r) * D;
      for (let i = 0; i < D; i++) xa[r * (D + 1) + i] = batch.x[xo + i];
      xa[r * (D + 1) + D] = 1;
    }
    const uo = (start + r) * P;
    for (let i = 0; i < P; i++) ub[r * (P + 1) + i] = batch.u[uo + i];
    ub[r * (P + 1) + P] = batch.y[start + r];
  }
  const xaTensor = xa ? tf.tensor2d(xa, [c, D + 1]) : null;
  let offset: tf.Tensor2D | null = null;
  try {
    if (batch.offset) offset = tf.tensor2d(Float32Array.from(batch.offset.subarray(start, end)), [c, 1]);
    return { rows: c, xa: xaTensor, ub: tf.tensor2d(ub, [c, P + 1]), offset };
  } catch (error) {
    xaTensor?.dispose();
    offset?.dispose();
    throw error;
  }
}

/**
 * The parameter matrices of the module comment, row-major, built in float64 and rounded once to
 * float32. `biasRounding[k]` = c_k − fround(c_k); `mean32` = m̃, the means the centring used.
 */
function hostParameters(params: LocalParams, D: number, fused: FusedResponse) {
  const { spec } = params;
  const { T, P } = spec;
  const P1 = P + 1;
  const column = new Float64Array(P1);
  const fs = new Float32Array((D + 1) * T * D); // (D+1, T·D)
  const mean32 = new Float32Array(T * D);
  const qu = new Float32Array(P1 * T); // (P+1, T)
  const gu = new Float32Array(P1 * T * P1); // (P+1, T·(P+1))
  const bias32 = new Float32Array(T);
  const biasRounding = new Float64Array(T);
  const TP1 = T * P1;
  for (let k = 0; k < T; k++) {
    if (D > 0) {
      // F̃_k = [F_k; −m_kᵀ F_k] / √2, so Σ_j ([x, 1] F̃_k)_j² = ½ ‖(x − m_k)ᵀ F_k‖². F_k is lower triangular.
      const f = params.precisionFactor.subarray(k * D * D, (k + 1) * D * D);
      const m = params.mean.subarray(k * D, (k + 1) * D);
      for (let j = 0; j < D; j++) {
        let mf = 0;
        for (let i = j; i < D; i++) {
          fs[i * T * D + k * D + j] = f[i * D + j] * Math.SQRT1_2;
          mf += m[i] * f[i * D + j];
        }
        fs[D * T * D + k * D + j] = -mf * Math.SQRT1_2;
        mean32[k * D + j] = m[j];
      }
    }
    let constant = params.logWeight[k] + (spec.covariateModel ? params.covariateConst[k] : 0);
    // qu_k (gaussian q_k = √(E[τ_k]/2) [−θ_k; 1]; bernoulli [θ_k; 0]) and the family's constant.
    const own = fused.columns(params, k, column);
    constant += own.constant;
    for (let i = 0; i < P1; i++) qu[i * T + k] = column[i];
    // G_k = [C_k s; 0 | qu_k], s = √½ (gaussian) or 1 (bernoulli): ‖[u, y] G_k‖² is
    // ½ uᵀΛ⁻¹u + q²(y − θᵀu)² or uᵀΛ⁻¹u + (θᵀu)² = ξ². C_k is lower triangular.
    const C = params.coefCovFactor.subarray(k * P * P, (k + 1) * P * P);
    const s = own.spreadScale;
    for (let i = 0; i < P; i++) for (let j = 0; j <= i; j++) gu[i * TP1 + k * P1 + j] = C[i * P + j] * s;
    for (let i = 0; i < P1; i++) gu[i * TP1 + k * P1 + P] = qu[i * T + k];
    bias32[k] = constant;
    biasRounding[k] = constant - bias32[k];
  }
  return { fs, mean32, qu, gu, bias32, biasRounding };
}

/**
 * Make `name` the active TensorFlow.js backend. For an initialized backend tf.setBackend completes
 * synchronously (it awaits only a first initialization), so the synchronous local step can call
 * this; a backend never initialized is an error that points to loadKernel.
 */
export function activateBackend(name: TfjsBackendName): void {
  if (tf.getBackend() === name) return;
  if (tf.findBackend(name) == null)
    throw new InternalError(
      `TensorFlow.js backend '${name}' is not initialized: create the kernel with loadKernel('${name}') (lib/kernel/backend.ts)`,
    );
  tf.setBackend(name).catch(() => {}); // settles synchronously here; the check below reports failure
  if (tf.getBackend() !== name)
    throw new BackendUnavailableError(name, `it could not be made active (active: '${tf.getBackend()}')`);
}
