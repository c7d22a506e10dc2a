/**
 * Rows per second of the local step (docs/model.md §4) for the float64 reference and the
 * TensorFlow.js kernels on the backends that load here, at D = 10, P = 11, T = 20, a batch of
 * 20 000 rows, gaussian response, covariate model on.
 *
 * The data: 8 well-separated clusters of standardized covariates, each with its own regression
 * (noise sd 0.1 before standardizing y). The posterior: 10 batch-VB sweeps of the reference kernel
 * on the first 2 000 rows from random hard assignments, so responsibilities look like a fit's
 * (many exactly 0) rather than uniform.
 *
 * Timing: one warm-up local step, then the best (and median) of several; prepare() (copying the
 * rows into float32 tensors) is timed separately and excluded from rows/s. The machine is shared,
 * so best-of is the figure to compare.
 *
 * Memory: the bytes per row a prepared batch holds in tensors (what the local runner caches per
 * shard and pass), and for wasm the growth of the wasm heap per row over prepare() and two local
 * steps of a 200 000-row batch, measured first, while the heap is small: it adds what XNNPACK
 * keeps beside the tensors (packed copies of matmul operands) and the per-chunk temporaries.
 *
 * Run directly with `npx tsx bench/kernel.ts` (add `--alternatives` for the formulation
 * micro-benchmarks behind the kernel's choices).
 */
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { parseConfig } from '../lib/config.js';
import { batchVb } from '../lib/inference/vb.js';
import { loadKernel, wasmFeatures } from '../lib/kernel/backend.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import { createTfjsKernel, type TfjsBackendName } from '../lib/kernel/tfjs.js';
import type { Batch, Kernel } from '../lib/kernel/types.js';
import { batchCoordinates, derive, initialAlpha, localParams, type LocalParams } from '../lib/model/posterior.js';
import { layoutOf, specFromConfig, type ModelSpec } from '../lib/model/spec.js';
import { createRandom as random } from '../lib/math/random.js';
import { standardizeColumns } from '../examples/generate.js';

const ROWS = 20_000;
const D = 10;
const P = 11;
const T = 20;

export interface KernelBenchResult {
  name: string;
  rowsPerSecond: number;
  /** Best local step over the timed repetitions, ms. */
  stepMs: number;
  /** Median local step, ms. */
  medianStepMs: number;
  /** Best prepare() of the batch, ms (excluded from rowsPerSecond). */
  prepareMs: number;
  /** rowsPerSecond / the reference's. */
  speedup: number;
  /** Bytes of tensors a prepared batch holds per row (0 for the reference, which keeps the caller's arrays). */
  preparedBytesPerRow: number;
  /** wasm only: heap growth per row over prepare() and two local steps of a 200 000-row batch. */
  wasmHeapBytesPerRow?: number;
}


/** Standardized clustered data: x = the D covariates, u = [x, 1], y per cluster's regression. */
export function benchBatch(n = ROWS, clusters = 8, seed = 1): Batch {
  const rng = random(seed);
  const centres = Array.from({ length: clusters }, () => Array.from({ length: D }, () => 2 * rng.normal()));
  const coefs = Array.from({ length: clusters }, () => Array.from({ length: P }, () => rng.normal()));
  const x = new Float64Array(n * D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < D; j++) x[i * D + j] = centres[i % clusters][j] + 0.3 * rng.normal();
  standardizeColumns(x, n, D);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) u[i * P + j] = x[i * D + j];
    u[i * P + D] = 1;
    let eta = 0;
    for (let j = 0; j < P; j++) eta += coefs[i % clusters][j] * u[i * P + j];
    y[i] = eta + 0.1 * rng.normal();
  }
  standardizeColumns(y, n, 1);
  return { n, x, u, y };
}


export function benchSpec(): ModelSpec {
  return specFromConfig(parseConfig({ target: 'y', components: T }), D, P);
}

/** LocalParams after `sweeps` batch-VB sweeps of the reference on `batch`, from random hard assignments. */
export function benchParams(spec: ModelSpec, batch: Batch, sweeps = 10, seed = 2): LocalParams {
  const rng = random(seed);
  const layout = layoutOf(spec);
  const stats = new Float64Array(layout.length);
  for (let i = 0; i < batch.n; i++) {
    const k = Math.floor(rng.uniform() * spec.T);
    const x = batch.x.subarray(i * D, (i + 1) * D);
    const u = batch.u.subarray(i * P, (i + 1) * P);
    stats[layout.count + k] += 1;
    for (let a = 0; a < D; a++) {
      stats[layout.sx + k * D + a] += x[a];
      for (let b = 0; b < D; b++) stats[layout.sxx + k * D * D + a * D + b] += x[a] * x[b];
    }
    for (let a = 0; a < P; a++) {
      stats[layout.syu + k * P + a] += batch.y[i] * u[a];
      for (let b = 0; b < P; b++) stats[layout.suu + k * P * P + a * P + b] += u[a] * u[b];
    }
    stats[layout.syy + k] += batch.y[i] ** 2;
  }
  const initial = { lambda: batchCoordinates(spec, stats), alpha: initialAlpha(spec) };
  const fit = batchVb(spec, initial, referenceKernel, [{ n: batch.n, data: batch }], {
    maxIterations: sweeps,
    tolerance: 0,
  });
  return localParams(derive(spec, fit.state));
}

function head(batch: Batch, n: number): Batch {
  const d = batch.x.length / batch.n;
  const p = batch.u.length / batch.n;
  return { n, x: batch.x.subarray(0, n * d), u: batch.u.subarray(0, n * p), y: batch.y.subarray(0, n) };
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Time one kernel: best of `prepares` prepare() calls, one warm-up step, best/median of `reps` steps. */
function timeKernel<Prep>(kernel: Kernel<Prep>, params: LocalParams, batch: Batch, reps: number, prepares: number) {
  const prepareTimes: number[] = [];
  let prepared: Prep | null = null;
  let preparedBytes = 0;
  for (let i = 0; i < prepares; i++) {
    if (prepared !== null) kernel.release(prepared);
    const bytes = tf.memory().numBytes;
    const t0 = performance.now();
    prepared = kernel.prepare(batch);
    prepareTimes.push(performance.now() - t0);
    preparedBytes = tf.memory().numBytes - bytes;
  }
  const data = prepared as Prep;
  try {
    kernel.localStep(params, data);
    const steps: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      kernel.localStep(params, data);
      steps.push(performance.now() - t0);
    }
    return {
      stepMs: Math.min(...steps),
      medianStepMs: median(steps),
      prepareMs: Math.min(...prepareTimes),
      preparedBytesPerRow: preparedBytes / batch.n,
    };
  } finally {
    kernel.release(data);
  }
}

/** The wasm heap's size; it grows as needed and never shrinks (freed blocks are reused). */
function wasmHeapBytes(): number {
  return (tf.findBackend('wasm') as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
}

/** Heap growth per row over prepare() and two local steps of an `n`-row batch (module comment). */
function wasmHeapPerRow<Prep>(kernel: Kernel<Prep>, params: LocalParams, n: number): number {
  const batch = benchBatch(n, 8, 3);
  const before = wasmHeapBytes();
  const prepared = kernel.prepare(batch);
  try {
    kernel.localStep(params, prepared);
    kernel.localStep(params, prepared);
    return (wasmHeapBytes() - before) / n;
  } finally {
    kernel.release(prepared);
  }
}

/** Rows/s of the local step of every kernel that loads here (module comment). */
export async function benchKernels(options: { reps?: number; referenceReps?: number } = {}): Promise<KernelBenchResult[]> {
  const spec = benchSpec();
  const batch = benchBatch();
  const params = benchParams(spec, head(batch, 2_000));
  const kernels: Kernel<unknown>[] = [referenceKernel];
  for (const backend of ['tensorflow', 'wasm', 'cpu'] as const) {
    try {
      kernels.push(await loadKernel(backend));
    } catch {
      // not available here (tfjs-node is optional); the table lists what loaded
    }
  }
  const results: KernelBenchResult[] = [];
  let referenceRate = NaN;
  for (const kernel of kernels) {
    const slow = kernel === referenceKernel || kernel.name === 'tfjs-cpu';
    const reps = slow ? (options.referenceReps ?? 3) : (options.reps ?? 10);
    const wasmHeapBytesPerRow = kernel.name === 'tfjs-wasm' ? wasmHeapPerRow(kernel, params, 200_000) : undefined;
    const t = timeKernel(kernel, params, batch, reps, kernel === referenceKernel ? 1 : 3);
    const rowsPerSecond = (batch.n / t.stepMs) * 1000;
    if (kernel === referenceKernel) referenceRate = rowsPerSecond;
    results.push({
      name: kernel.name,
      rowsPerSecond,
      ...t,
      speedup: rowsPerSecond / referenceRate,
      ...(wasmHeapBytesPerRow !== undefined ? { wasmHeapBytesPerRow } : {}),
    });
  }
  return results;
}

/**
 * Micro-benchmarks of the formulations the kernel chose between, per backend, on one chunk of
 * 4096 rows (best of 20, ms), plus the whole local step at several chunk sizes. On wasm a matmul's
 * right operand B is packed by XNNPACK on first use and the packed copy is cached as long as B
 * lives: a temporary B is packed on every call, a prepared one would be cached beside the rows.
 */
export async function benchAlternatives(): Promise<{ backend: string; what: string; ms: number }[]> {
  const out: { backend: string; what: string; ms: number }[] = [];
  const c = 4096;
  const P1 = P + 1;
  const spec = benchSpec();
  const batch = benchBatch();
  const params = benchParams(spec, head(batch, 2_000));
  for (const backend of ['wasm', 'cpu'] as const) {
    await loadKernel(backend);
    const wasm = backend === 'wasm';
    const time = (what: string, f: () => tf.TensorContainer, reps = wasm ? 20 : 5) => {
      tf.dispose(f());
      let best = Infinity;
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        tf.dispose(f());
        best = Math.min(best, performance.now() - t0);
      }
      out.push({ backend, what, ms: best });
    };
    const chosen = (on: boolean) => (on ? '  [chosen]' : '');
    // The weights w of the local step are its temporaries: a fresh tensor, packed on every call.
    const fresh = (t: tf.Tensor2D) => tf.add(t, 0) as tf.Tensor2D;
    const tr = (a: tf.Tensor2D, b: tf.Tensor2D) => (wasm ? tf.matMul(tf.transpose(a), b) : tf.matMul(a, b, true, false));
    const inputs = tf.tidy(() => {
      const x = tf.randomNormal([c, D]);
      return {
        r: tf.softmax(tf.randomNormal([c, T])) as tf.Tensor2D,
        lnRho: tf.mul(tf.randomNormal([c, T]), 30) as tf.Tensor2D,
        x: x as tf.Tensor2D,
        xa: tf.concat([x, tf.ones([c, 1])], 1) as tf.Tensor2D,
        ub: tf.randomNormal([c, P1]) as tf.Tensor2D,
        fs: tf.randomNormal([D + 1, T * D]) as tf.Tensor2D,
        gu: tf.randomNormal([P1, T * P1]) as tf.Tensor2D,
        spread: tf.randomNormal([P * P, T]) as tf.Tensor2D,
        meanT: tf.randomNormal([T, D, 1]),
        means: tf.randomNormal([T, D]) as tf.Tensor2D,
        centreT: tf.randomNormal([T * D, D + 1]) as tf.Tensor2D,
      };
    });
    const { r, lnRho, x, xa, ub, fs, gu, spread, meanT, means, centreT } = inputs;
    const weightedT = tf.tidy(() =>
      tf.reshape(tf.mul(tf.sub(tf.reshape(tf.transpose(x), [1, D, c]), meanT), tf.reshape(tf.transpose(r), [T, 1, c])), [T * D, c]),
    ) as tf.Tensor2D;
    const weighted = tf.tidy(() =>
      tf.reshape(tf.mul(tf.sub(tf.reshape(x, [c, 1, D]), tf.reshape(means, [1, T, D])), tf.reshape(r, [c, T, 1])), [c, T * D]),
    ) as tf.Tensor2D;

    // Σ_n r_nk (x_n − m̃_k) [x_n, 1]ᵀ: the operand with T·D columns per row, and where the rows go.
    time(`Σ r (x − m̃)[x,1]ᵀ: Wᵀ (T·D × c, built transposed) · copy of [x,1]${chosen(true)}`, () =>
      tf.tidy(() => tf.matMul(weightedT, wasm ? fresh(xa) : xa)),
    );
    // (a fresh copy of W each call, as in the local step, where W is a temporary)
    time('Σ r (x − m̃)[x,1]ᵀ: [x,1]ᵀ · W (W, c × T·D, as XNNPACK weights: packed per call)', () =>
      tf.tidy(() => tr(xa, tf.add(weighted, 0) as tf.Tensor2D)),
    );
    if (wasm)
      time('Σ r (x − m̃)[x,1]ᵀ: transpose(W) · [x,1] (the rows cached packed: a 2nd copy per batch)', () =>
        tf.tidy(() => tf.matMul(tf.transpose(weighted), xa)),
      );
    time('centred scatter: T per-component products (x − m_k)ᵀ diag(r_k) (x − m_k)', () =>
      tf.tidy(() => {
        const rT = tf.transpose(r);
        return tf.stack(
          Array.from({ length: T }, (_, k) => {
            const z = tf.sub(x, tf.slice(means, [k, 0], [1, D])) as tf.Tensor2D;
            return tf.matMul(tf.mul(tf.transpose(z), tf.slice(rT, [k, 0], [1, c])) as tf.Tensor2D, z);
          }),
        );
      }),
      wasm ? 5 : 2,
    );
    time(`r ⊙ (x − m̃), (T, D, c): broadcast sub and mul${chosen(true)}`, () =>
      tf.tidy(() => tf.mul(tf.sub(tf.reshape(tf.transpose(x), [1, D, c]), meanT), tf.reshape(tf.transpose(r), [T, 1, c]))),
    );
    time('r ⊙ (x − m̃), (T, D, c): Ξᵀ · [x,1]ᵀ matmul, then mul', () =>
      tf.tidy(() => tf.mul(tf.reshape(tf.matMul(centreT, tf.transpose(xa)), [T, D, c]), tf.reshape(tf.transpose(r), [T, 1, c]))),
    );

    // ½ uᵀΛ_k⁻¹u for all k (with the residual in the same blocks).
    time(`spread: [u,y] · [C_k | q_k]… squared, block sums${chosen(true)}`, () =>
      tf.tidy(() => tf.sum(tf.reshape(tf.square(tf.matMul(ub, gu)), [c, T, P1]), 2)),
    );
    time('spread: u uᵀ features (broadcast outer product) · vec Λ_k⁻¹', () =>
      tf.tidy(() => {
        const u = tf.slice(ub, [0, 0], [c, P]);
        return tf.matMul(tf.reshape(tf.mul(tf.reshape(u, [c, P, 1]), tf.reshape(u, [c, 1, P])), [c, P * P]) as tf.Tensor2D, spread);
      }),
    );

    // Σ w u uᵀ for all k.
    time(`Σ w u uᵀ: (u ⊗ u)ᵀ, (P², c) by one broadcast product, · w${chosen(true)}`, () =>
      tf.tidy(() => {
        const uT = tf.slice(tf.transpose(ub), [0, 0], [P, c]);
        return tf.matMul(tf.reshape(tf.mul(tf.reshape(uT, [P, 1, c]), tf.reshape(uT, [1, P, c])), [P * P, c]) as tf.Tensor2D, fresh(r));
      }),
    );
    time('Σ w u uᵀ: lower triangle, (P(P+1)/2, c) by slices and concat, · w', () =>
      tf.tidy(() => {
        const uT = tf.slice(tf.transpose(ub), [0, 0], [P, c]);
        const rows = Array.from({ length: P }, (_, i) => tf.mul(tf.slice(uT, [i, 0], [1, c]), tf.slice(uT, [0, 0], [i + 1, c])));
        return tf.matMul(tf.concat(rows, 0) as tf.Tensor2D, fresh(r));
      }),
    );

    // Softmax and log-sum-exp.
    time(`r, logsumexp: tf.softmax, then max − ln max_k r${chosen(true)}`, () =>
      tf.tidy(() => {
        const rr = tf.softmax(lnRho);
        return [rr, tf.sub(tf.max(lnRho, 1), tf.log(tf.max(rr, 1)))];
      }),
    );
    time('r, logsumexp: max, sub, exp, sum, div, log', () =>
      tf.tidy(() => {
        const m = tf.max(lnRho, 1, true);
        const e = tf.exp(tf.sub(lnRho, m));
        const s = tf.sum(e, 1, true);
        return [tf.div(e, s), tf.add(m, tf.log(s))];
      }),
    );
    time('quad form: [x,1] · F̃ (c × T·D), squared, block sums', () =>
      tf.tidy(() => tf.sum(tf.reshape(tf.square(tf.matMul(xa, fs)), [c, T, D]), 2)),
    );
    tf.dispose([weightedT, weighted, ...Object.values(inputs)]);
    for (const chunkRows of [1024, 2048, 4096, 8192, ROWS]) {
      if (backend === 'cpu' && chunkRows !== 4096 && chunkRows !== ROWS) continue;
      const kernel = createTfjsKernel(backend as TfjsBackendName, { chunkRows });
      const t = timeKernel(kernel, params, batch, backend === 'cpu' ? 2 : 8, 1);
      out.push({ backend, what: `local step, chunkRows = ${chunkRows} (20 000 rows)`, ms: t.stepMs });
    }
  }
  return out;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchKernels();
  const wasm = await wasmFeatures().catch(() => null);
  console.log(
    `local step, gaussian, covariate model on: D = ${D}, P = ${P}, T = ${T}, ${ROWS} rows; Node ${process.version}, ` +
      `wasm SIMD ${wasm ? (wasm.simd ? 'on' : 'off') : 'n/a'}, wasm threads ${wasm ? (wasm.threads ? 'on' : 'off') : 'n/a'}`,
  );
  console.log('kernel          rows/s  best step ms  median ms  prepare ms  × reference  prepared B/row  wasm heap B/row');
  for (const r of results)
    console.log(
      `${r.name.padEnd(12)} ${Math.round(r.rowsPerSecond).toString().padStart(9)} ${r.stepMs.toFixed(1).padStart(13)} ` +
        `${r.medianStepMs.toFixed(1).padStart(10)} ${r.prepareMs.toFixed(1).padStart(11)} ${r.speedup.toFixed(1).padStart(12)} ` +
        `${r.preparedBytesPerRow.toFixed(0).padStart(15)} ${(r.wasmHeapBytesPerRow?.toFixed(0) ?? '').padStart(16)}`,
    );
  if (process.argv.includes('--alternatives')) {
    console.log('\nformulations (best ms; one chunk of 4096 rows unless stated)');
    for (const a of await benchAlternatives()) console.log(`${a.backend.padEnd(5)} ${a.ms.toFixed(2).padStart(9)}  ${a.what}`);
  }
}
