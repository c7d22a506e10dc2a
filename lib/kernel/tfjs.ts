/**
 * The TensorFlow.js local step: the mathematics of reference.ts (DESIGN.md §2,
 * posterior.ts#LocalParams) for a whole batch at once, as matrix products in float32.
 *
 * prepare() turns the batch once into per-row feature matrices, in chunks of `chunkRows` rows
 * (c rows each; D = covariates, P = regression inputs, Dtri = D(D+1)/2, Ptri = P(P+1)/2):
 *
 *   xa = [x, 1]                                   (c, D + 1)     covariate quadratic form
 *   ub = [u, y]                                   (c, P + 1)     residual y − θᵀu, prediction θᵀu
 *   uq = [1, (u_i u_j)_{i ≥ j}]                   (c, 1 + Ptri)  constants + uᵀΛ⁻¹u; Σ w u uᵀ
 *   gr = [x, 1, u, y, y u, y², (x_i x_j)_{i ≥ j}]  (c, Wr)        the statistics weighted by r
 *   y                                             (c, 1)         the bernoulli (y − ½) θᵀu term
 *
 * Each local step builds small parameter matrices from LocalParams in float64 on the host and
 * rounds them once to float32:
 *
 *   ½ ν_k (x − m_k)ᵀ W_k (x − m_k) = ‖[x, 1] F̃_k‖²,  F̃_k = [F_k; −m_kᵀ F_k] / √2      (PRML 10.64)
 *   ½ E[τ_k] (y − θ_kᵀ u)²          = ([u, y] q_k)²,  q_k = √(E[τ_k]/2) [−θ_k; 1]     (PRML 10.3)
 *   c_k − ½ uᵀ Λ_k⁻¹ u              = uq · s_k,        s_k = [c_k; −½ lower triangle of Λ_k⁻¹, off-diagonal ×2]
 *
 * so, for all k at once (n×T): one matmul xa · [F̃_1 … F̃_T] (c × T·D), squared and summed per
 * component block; one matmul ub · [q_1 … q_T], squared; one matmul uq · [s_1 … s_T]. Then the
 * row-wise log-sum-exp with the row max subtracted, r = softmax, and the statistics as two
 * matmuls, rᵀ · gr and wᵀ · uq (w = r, or 2 r λ(ξ) for the bernoulli response), which the host
 * unpacks into the float64 layout of spec.ts (mirroring the lower triangles) and sums over chunks.
 *
 * Bernoulli (Jaakkola–Jordan, PRML 10.6): ξ² = uᵀ Λ⁻¹ u + (θᵀ u)² (10.163) from uq · s_k (without
 * the −½ and the constant) and ub · [θ_k; 0]; ln ρ gets ln σ(ξ) + (y − ½) θᵀu − ξ/2 (10.152),
 * computed as −(ξ/2 + ln(1 + e^{−ξ})) for ξ ≥ 0; λ(ξ) = tanh(ξ/2) / (4ξ), 1/8 − ξ²/96 below 1e-3.
 *
 * Float32 choices (bounded against reference.ts in test/kernel.test.ts):
 * - The residual and the covariate quadratic form are squares of differences, not expanded into
 *   xᵀAx − 2xᵀAm + mᵀAm (which would need one matmul fewer): the expanded form loses |A|·|x|²·ε32
 *   to cancellation. On a tight fit (E[τ] up to 1.4e4, ν W up to 590; float32 emulated) the
 *   largest error in ln ρ of a component within 50 nats was 4e-3 expanded vs 2e-5 direct for the
 *   residual term, 1.4e-4 vs 6e-6 for the covariate term. The spread uᵀΛ⁻¹u is small and positive,
 *   so its expanded form (uq · s_k) is accurate.
 * - Rows go in chunks (default 4096): float32 sums run over at most that many rows, the chunks
 *   are added in float64 on the host, and the matrices stay cache-sized.
 * - Σ_n logsumexp_k ln ρ_nk is summed in float64 on the host from the per-row values. The
 *   constants c_k reach the kernel rounded to float32; the host adds Σ_k N_k (c_k − fround(c_k)),
 *   that rounding's exact first-order effect on the sum (∂ logsumexp_n / ∂ c_k = r_nk).
 * - Far components have large quadratic forms; exp(ln ρ − max) underflows to 0 for them, as in
 *   the reference.
 *
 * Backends (bench/kernel.ts --alternatives): on `wasm` only a plain A·B product of rank-2 tensors
 * reaches XNNPACK; a transposed operand or a rank-3 (batched) product falls back to a scalar loop
 * (measured 9× and 160× slower). Hence rᵀ·gr is transpose(r) · gr there, with gr as XNNPACK's
 * "weights", whose packed copy it caches for the tensor's lifetime. The other backends take
 * matMul(r, gr, transposeA) directly (on cpu twice as fast as an explicit transpose).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LocalParams } from '../model/posterior.js';
import { layoutOf } from '../model/spec.js';
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
  /** [1, lower triangle of u uᵀ], (rows, 1 + P(P+1)/2). */
  uq: tf.Tensor2D;
  /** [x, 1, u, y, y u, y², lower triangle of x xᵀ], (rows, Wr). */
  gr: tf.Tensor2D;
  /** y, (rows, 1). */
  y: tf.Tensor2D;
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
  /** False after release(). */
  live: boolean;
}

/** Tuning knobs, for the benchmark; the defaults are the measured best. */
export interface TfjsKernelOptions {
  /** Rows per chunk. @default 4096 */
  chunkRows?: number;
}

const DEFAULT_CHUNK_ROWS = 4096;
/** Below this ξ, λ(ξ) = 1/8 − ξ²/96 (truncation error < 1e-13), avoiding 0/0 in float32. */
const XI_SMALL = 1e-3;

function tri(m: number): number {
  return (m * (m + 1)) / 2;
}

/** Column offsets inside gr for a batch with D covariates and P regression inputs. */
function grLayout(D: number, P: number) {
  const one = D;
  const u = D + 1;
  const y = u + P;
  const yu = y + 1;
  const yy = yu + P;
  const xx = yy + 1;
  return { x: 0, one, u, y, yu, yy, xx, width: xx + tri(D) };
}

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
  // wᵀ · features. On wasm an explicit transpose keeps the product on XNNPACK (module comment);
  // the other backends handle transposeA natively, and on cpu that is twice as fast (measured).
  const weightedSum =
    backendName === 'wasm'
      ? (w: tf.Tensor, features: tf.Tensor2D) => tf.matMul(tf.transpose(w), features)
      : (w: tf.Tensor, features: tf.Tensor2D) => tf.matMul(w, features, true, false);

  return {
    name,

    prepare(batch: Batch): PreparedTensors {
      const { n } = batch;
      const D = n > 0 ? batch.x.length / n : 0;
      const P = n > 0 ? batch.u.length / n : 0;
      if (!Number.isInteger(n) || n < 0 || !Number.isInteger(D) || !Number.isInteger(P) || batch.y.length !== n)
        throw new RangeError(
          `${name}: inconsistent batch: n = ${n}, x has ${batch.x.length} values, u ${batch.u.length}, y ${batch.y.length}`,
        );
      activateBackend(backendName);
      const chunks: PreparedChunk[] = [];
      try {
        for (let start = 0; start < n; start += chunkRows)
          chunks.push(prepareChunk(batch, start, Math.min(n, start + chunkRows), D, P));
      } catch (error) {
        for (const c of chunks) disposeChunk(c);
        throw error;
      }
      return { backend: backendName, n, D, P, chunks, live: true };
    },

    release(prepared: PreparedTensors): void {
      if (!prepared.live) return;
      for (const c of prepared.chunks) disposeChunk(c);
      prepared.chunks = [];
      prepared.live = false;
    },

    localStep(params: LocalParams, prepared: PreparedTensors, options: LocalStepOptions = {}): LocalStepResult {
      const { spec } = params;
      const { T, P } = spec;
      const D = spec.covariateModel ? spec.D : 0;
      if (!prepared.live) throw new Error(`${name}: localStep on a released batch`);
      if (prepared.backend !== backendName)
        throw new Error(`${name}: the batch was prepared by the tfjs-${prepared.backend} kernel`);
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
      const gaussian = spec.family === 'gaussian';
      const g = grLayout(prepared.D, P); // x columns present but unused when D = 0 < prepared.D
      const Q = 1 + tri(P);
      const host = hostParameters(params, D);
      const stats = new Float64Array(layout.length);
      const resp = options.responsibilities ? new Float64Array(prepared.n * T) : undefined;
      const sumR = new Float64Array(T * g.width); // Σ r gr, (T, Wr)
      const sumW = new Float64Array(T * Q); // Σ w uq, (T, 1 + Ptri)
      // Gaussian: statistics of the residuals e_k = y − θ_kᵀu (scaled by q_k), see below.
      const sumE = new Float64Array(T * (P + 1)); // Σ r q e [u, y], (T, P + 1)
      const sumEE = new Float64Array(T); // Σ r (q e)², (T)
      let logLik = 0;

      // The parameter matrices, created once per local step and shared by the chunks (on wasm,
      // XNNPACK packs each once).
      const w8: { fs: tf.Tensor2D | null; qu: tf.Tensor2D | null; qs: tf.Tensor2D | null; bias: tf.Tensor2D | null } = {
        fs: null, qu: null, qs: null, bias: null,
      };
      try {
        w8.fs = D > 0 ? tf.tensor2d(host.fs, [D + 1, T * D]) : null;
        w8.qu = tf.tensor2d(host.qu, [P + 1, T]);
        w8.qs = tf.tensor2d(host.qs, [Q, T]);
        w8.bias = gaussian ? null : tf.tensor2d(host.bias32, [1, T]);
        const qu = w8.qu;
        const qs = w8.qs;
        let row = 0;
        for (const chunk of prepared.chunks) {
          const c = chunk.rows;
          const outs = tf.tidy(() => {
            let lnRho: tf.Tensor;
            let lambda: tf.Tensor | null = null;
            let residual: tf.Tensor | null = null;
            if (gaussian) {
              // c_k − ½ uᵀΛ⁻¹u − ½ E[τ](y − θᵀu)²
              residual = tf.matMul(chunk.ub, qu); // q_k (y − θ_kᵀu), (c, T)
              lnRho = tf.sub(tf.matMul(chunk.uq, qs), tf.square(residual));
            } else {
              const pred = tf.matMul(chunk.ub, qu); // θᵀu
              const xi = tf.sqrt(tf.relu(tf.add(tf.matMul(chunk.uq, qs), tf.square(pred))));
              const bound = tf.neg(tf.add(tf.mul(xi, 0.5), tf.log1p(tf.exp(tf.neg(xi)))));
              lnRho = tf.add(tf.add(bound, tf.mul(tf.sub(chunk.y, 0.5), pred)), w8.bias!);
              const xiSafe = tf.maximum(xi, XI_SMALL);
              lambda = tf.where(
                tf.less(xi, XI_SMALL),
                tf.sub(0.125, tf.div(tf.square(xi), 96)),
                tf.div(tf.tanh(tf.mul(xiSafe, 0.5)), tf.mul(xiSafe, 4)),
              );
            }
            if (D > 0) {
              const z = tf.matMul(chunk.xa!, w8.fs!); // (c, T·D)
              lnRho = tf.sub(lnRho, tf.sum(tf.reshape(tf.square(z), [c, T, D]), 2));
            }
            const max = tf.max(lnRho, 1, true);
            const ex = tf.exp(tf.sub(lnRho, max));
            const total = tf.sum(ex, 1, true);
            const r = tf.div(ex, total);
            const lse = tf.add(max, tf.log(total));
            const sr = weightedSum(r, chunk.gr);
            const sw = weightedSum(lambda ? tf.mul(r, tf.mul(lambda, 2)) : r, chunk.uq);
            const out = [sr, sw, lse];
            if (residual) {
              const rRes = tf.mul(r, residual);
              out.push(weightedSum(rRes, chunk.ub), tf.sum(tf.mul(rRes, residual), 0));
            }
            return options.responsibilities ? [...out, r] : out;
          });
          try {
            addInto(sumR, outs[0].dataSync());
            addInto(sumW, outs[1].dataSync());
            const lse = outs[2].dataSync();
            let s = 0;
            for (let i = 0; i < c; i++) s += lse[i];
            logLik += s;
            if (gaussian) {
              addInto(sumE, outs[3].dataSync());
              addInto(sumEE, outs[4].dataSync());
            }
            if (resp) resp.set(outs[gaussian ? 5 : 3].dataSync(), row * T);
          } finally {
            for (const t of outs) t.dispose();
          }
          row += c;
        }
      } finally {
        for (const t of [w8.fs, w8.qu, w8.qs, w8.bias]) t?.dispose();
      }

      for (let k = 0; k < T; k++) {
        const sr = sumR.subarray(k * g.width, (k + 1) * g.width);
        stats[layout.count + k] = sr[g.one];
        for (let i = 0; i < D; i++) stats[layout.sx + k * D + i] = sr[g.x + i];
        unpackTriangle(sr, g.xx, stats, layout.sxx + k * D * D, D);
        unpackTriangle(sumW, k * Q + 1, stats, layout.suu + k * P * P, P);
        if (gaussian) uncenterResponse(host.qu, k, T, P, sumE, sumEE[k], stats, layout);
        else for (let i = 0; i < P; i++) stats[layout.syu + k * P + i] = sr[g.yu + i] - 0.5 * sr[g.u + i];
        logLik += stats[layout.count + k] * host.biasRounding[k];
      }
      return { stats, logLik, responsibilities: resp };
    },
  };
}

/**
 * Σ r y u and Σ r y² from residual statistics, in float64. With θ₀ = the float32 coefficients
 * the kernel used (θ₀_i = −qu_ik / qu_Pk) and e = y − θ₀ᵀu:
 *   Σ r y u = Σ r e u + (Σ r u uᵀ) θ₀,   Σ r y² = Σ r e² + 2 θ₀ᵀ Σ r e u + θ₀ᵀ (Σ r u uᵀ) θ₀.
 * Why: the noise rate b_k = (c_k − h_kᵀ θ_k)/2 is the residual sum of squares, a small difference
 * of large raw moments. Raw moments summed in float32 lose it (measured: ELBO dropping by ~1e3 on
 * 1M rows with tight regressions); residual moments keep it, since the identity
 * c − hᵀΛ⁻¹h = Σ r e² − (Σ r e u)ᵀ Λ⁻¹ (Σ r e u) (up to the prior) holds for any θ₀.
 * Needs the suu block of `stats` already filled (w = r for the gaussian response).
 */
function uncenterResponse(
  qu: Float32Array,
  k: number,
  T: number,
  P: number,
  sumE: Float64Array,
  sumEE: number,
  stats: Float64Array,
  layout: ReturnType<typeof layoutOf>,
): void {
  const q = qu[P * T + k];
  const theta = new Float64Array(P);
  for (let i = 0; i < P; i++) theta[i] = -qu[i * T + k] / q;
  const suu = stats.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P);
  let yy = sumEE / (q * q);
  for (let i = 0; i < P; i++) {
    const eu = sumE[k * (P + 1) + i] / q;
    let uuTheta = 0;
    for (let j = 0; j < P; j++) uuTheta += suu[i * P + j] * theta[j];
    stats[layout.syu + k * P + i] = eu + uuTheta;
    yy += 2 * theta[i] * eu + theta[i] * uuTheta;
  }
  stats[layout.syy + k] = yy;
}

function addInto(acc: Float64Array, v: ArrayLike<number>): void {
  for (let i = 0; i < acc.length; i++) acc[i] += v[i];
}

/** Write the packed lower triangle at src[offset…] as the symmetric m×m block dst[at…]. */
function unpackTriangle(src: Float64Array, offset: number, dst: Float64Array, at: number, m: number): void {
  let idx = offset;
  for (let i = 0; i < m; i++)
    for (let j = 0; j <= i; j++) {
      const v = src[idx++];
      dst[at + i * m + j] = v;
      dst[at + j * m + i] = v;
    }
}

function disposeChunk(c: PreparedChunk): void {
  for (const t of [c.xa, c.ub, c.uq, c.gr, c.y]) t?.dispose();
}

/** The feature matrices of rows [start, end) (module comment) as float32 tensors. */
function prepareChunk(batch: Batch, start: number, end: number, D: number, P: number): PreparedChunk {
  const c = end - start;
  const g = grLayout(D, P);
  const Q = 1 + tri(P);
  const xa = D > 0 ? new Float32Array(c * (D + 1)) : null;
  const ub = new Float32Array(c * (P + 1));
  const uq = new Float32Array(c * Q);
  const gr = new Float32Array(c * g.width);
  const yv = new Float32Array(c);
  for (let r = 0; r < c; r++) {
    const xo = (start + r) * D;
    const uo = (start + r) * P;
    const y = batch.y[start + r];
    yv[r] = y;
    const G = r * g.width;
    for (let i = 0; i < D; i++) gr[G + g.x + i] = batch.x[xo + i];
    gr[G + g.one] = 1;
    gr[G + g.y] = y;
    gr[G + g.yy] = y * y;
    for (let i = 0; i < P; i++) {
      gr[G + g.u + i] = batch.u[uo + i];
      gr[G + g.yu + i] = y * batch.u[uo + i];
    }
    let idx = G + g.xx;
    for (let i = 0; i < D; i++) for (let j = 0; j <= i; j++) gr[idx++] = batch.x[xo + i] * batch.x[xo + j];
    if (xa) {
      for (let i = 0; i < D; i++) xa[r * (D + 1) + i] = batch.x[xo + i];
      xa[r * (D + 1) + D] = 1;
    }
    for (let i = 0; i < P; i++) ub[r * (P + 1) + i] = batch.u[uo + i];
    ub[r * (P + 1) + P] = y;
    idx = r * Q;
    uq[idx++] = 1;
    for (let i = 0; i < P; i++) for (let j = 0; j <= i; j++) uq[idx++] = batch.u[uo + i] * batch.u[uo + j];
  }
  const tensors: tf.Tensor[] = [];
  try {
    const make = (v: Float32Array, cols: number) => {
      const t = tf.tensor2d(v, [c, cols]);
      tensors.push(t);
      return t;
    };
    return {
      rows: c,
      xa: xa ? make(xa, D + 1) : null,
      ub: make(ub, P + 1),
      uq: make(uq, Q),
      gr: make(gr, g.width),
      y: make(yv, 1),
    };
  } catch (error) {
    for (const t of tensors) t.dispose();
    throw error;
  }
}

/**
 * The parameter matrices of the module comment, (inputs × components) row-major, built in float64
 * and rounded once to float32. `biasRounding[k]` = c_k − fround(c_k).
 */
function hostParameters(params: LocalParams, D: number) {
  const { spec } = params;
  const { T, P } = spec;
  const gaussian = spec.family === 'gaussian';
  const Q = 1 + tri(P);
  const fs = new Float32Array((D + 1) * T * D);
  const qu = new Float32Array((P + 1) * T);
  const qs = new Float32Array(Q * T);
  const bias32 = new Float32Array(T);
  const biasRounding = new Float64Array(T);
  const sigma = new Float64Array(P * P);
  for (let k = 0; k < T; k++) {
    // F̃_k = [F_k; −m_kᵀ F_k] / √2, so Σ_j ([x, 1] F̃_k)_j² = ½ ‖(x − m_k)ᵀ F_k‖². F_k is lower triangular.
    if (D > 0) {
      const f = params.precisionFactor.subarray(k * D * D, (k + 1) * D * D);
      const m = params.mean.subarray(k * D, (k + 1) * D);
      for (let j = 0; j < D; j++) {
        let mf = 0;
        for (let i = j; i < D; i++) {
          fs[i * T * D + k * D + j] = f[i * D + j] * Math.SQRT1_2;
          mf += m[i] * f[i * D + j];
        }
        fs[D * T * D + k * D + j] = -mf * Math.SQRT1_2;
      }
    }
    // Λ_k⁻¹ = C_k C_kᵀ (lower triangle), C_k lower triangular.
    const C = params.coefCovFactor.subarray(k * P * P, (k + 1) * P * P);
    for (let i = 0; i < P; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let l = 0; l <= j; l++) s += C[i * P + l] * C[j * P + l];
        sigma[i * P + j] = s;
      }
    let constant = params.logWeight[k] + (spec.covariateModel ? params.covariateConst[k] : 0);
    const theta = params.coef.subarray(k * P, (k + 1) * P);
    if (gaussian) {
      constant += params.responseConst[k];
      const scale = Math.sqrt(params.noisePrecision[k] / 2);
      for (let i = 0; i < P; i++) qu[i * T + k] = -scale * theta[i];
      qu[P * T + k] = scale;
    } else {
      for (let i = 0; i < P; i++) qu[i * T + k] = theta[i];
    }
    bias32[k] = constant;
    biasRounding[k] = constant - bias32[k];
    // gaussian: [c_k; −½ Λ⁻¹ terms]; bernoulli: [0; Λ⁻¹ terms] (ξ² needs the spread alone).
    qs[k] = gaussian ? bias32[k] : 0;
    let idx = 1;
    for (let i = 0; i < P; i++)
      for (let j = 0; j <= i; j++) {
        const s = (i === j ? 1 : 2) * sigma[i * P + j];
        qs[idx++ * T + k] = gaussian ? -0.5 * s : s;
      }
  }
  return { fs, qu, qs, bias32, biasRounding };
}

/**
 * Make `name` the active TensorFlow.js backend. For an initialized backend tf.setBackend completes
 * synchronously (it awaits only a first initialization), so the synchronous local step can call
 * this; a backend never initialized is an error that points to loadKernel.
 */
export function activateBackend(name: TfjsBackendName): void {
  if (tf.getBackend() === name) return;
  if (tf.findBackend(name) == null)
    throw new Error(
      `TensorFlow.js backend '${name}' is not initialized: create the kernel with loadKernel('${name}') (lib/kernel/backend.ts)`,
    );
  tf.setBackend(name).catch(() => {}); // settles synchronously here; the check below reports failure
  if (tf.getBackend() !== name)
    throw new Error(`TensorFlow.js backend '${name}' could not be made active (active: '${tf.getBackend()}')`);
}
