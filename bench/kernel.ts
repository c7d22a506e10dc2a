/**
 * Rows per second of the local step (DESIGN.md §2) for the float64 reference and the
 * TensorFlow.js kernels on the backends that load here, at D = 10, P = 11, T = 20, a batch of
 * 20 000 rows, gaussian response, covariate model on.
 *
 * The data: 8 well-separated clusters of standardized covariates, each with its own regression
 * (noise sd 0.1 before standardizing y). The posterior: 10 batch-VB sweeps of the reference kernel
 * on the first 2 000 rows from random hard assignments, so responsibilities look like a fit's
 * (many exactly 0) rather than uniform.
 *
 * Timing: one warm-up local step, then the best (and median) of several; prepare() (building the
 * feature tensors) is timed separately and excluded from rows/s. The machine is shared, so best-of
 * is the figure to compare.
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
}

/** A deterministic generator (mulberry32) and standard normals from it. */
function random(seed: number): { uniform: () => number; normal: () => number } {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return { uniform, normal: () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()) };
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
  standardize(x, n, D);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) u[i * P + j] = x[i * D + j];
    u[i * P + D] = 1;
    let eta = 0;
    for (let j = 0; j < P; j++) eta += coefs[i % clusters][j] * u[i * P + j];
    y[i] = eta + 0.1 * rng.normal();
  }
  standardize(y, n, 1);
  return { n, x, u, y };
}

function standardize(v: Float64Array, n: number, m: number): void {
  for (let j = 0; j < m; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += v[i * m + j];
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (v[i * m + j] - mean) ** 2;
    const sd = Math.sqrt(variance / n) || 1;
    for (let i = 0; i < n; i++) v[i * m + j] = (v[i * m + j] - mean) / sd;
  }
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
  for (let i = 0; i < prepares; i++) {
    if (prepared !== null) kernel.release(prepared);
    const t0 = performance.now();
    prepared = kernel.prepare(batch);
    prepareTimes.push(performance.now() - t0);
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
    return { stepMs: Math.min(...steps), medianStepMs: median(steps), prepareMs: Math.min(...prepareTimes) };
  } finally {
    kernel.release(data);
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
    const t = timeKernel(kernel, params, batch, reps, kernel === referenceKernel ? 1 : 3);
    const rowsPerSecond = (batch.n / t.stepMs) * 1000;
    if (kernel === referenceKernel) referenceRate = rowsPerSecond;
    results.push({ name: kernel.name, rowsPerSecond, ...t, speedup: rowsPerSecond / referenceRate });
  }
  return results;
}

/**
 * Micro-benchmarks of the formulations the kernel chose between, per backend, on one chunk of
 * 4096 rows (best of 20, ms), plus the whole local step at several chunk sizes.
 */
export async function benchAlternatives(): Promise<{ backend: string; what: string; ms: number }[]> {
  const out: { backend: string; what: string; ms: number }[] = [];
  const c = 4096;
  const spec = benchSpec();
  const batch = benchBatch();
  const params = benchParams(spec, head(batch, 2_000));
  for (const backend of ['wasm', 'cpu'] as const) {
    await loadKernel(backend);
    const time = (what: string, f: () => tf.Tensor, reps = backend === 'cpu' ? 5 : 20) => {
      f().dispose();
      let best = Infinity;
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        f().dispose();
        best = Math.min(best, performance.now() - t0);
      }
      out.push({ backend, what, ms: best });
    };
    const dtri = (D * (D + 1)) / 2;
    const inputs = tf.tidy(() => ({
      r: tf.randomUniform([c, T]) as tf.Tensor2D,
      x: tf.randomNormal([c, D]) as tf.Tensor2D,
      xa: tf.randomNormal([c, D + 1]) as tf.Tensor2D,
      fs: tf.randomNormal([D + 1, T * D]) as tf.Tensor2D,
      gr: tf.randomNormal([c, 1 + 2 * P + 2 + D + dtri]) as tf.Tensor2D,
      grT: tf.randomNormal([1 + 2 * P + 2 + D + dtri, c]) as tf.Tensor2D,
      xx: tf.randomNormal([c, dtri]) as tf.Tensor2D,
      blocks: tf.tensor2d(
        Float32Array.from({ length: T * D * T }, (_, i) => (Math.floor(Math.floor(i / T) / D) === i % T ? 1 : 0)),
        [T * D, T],
      ),
    }));
    const { r, x, xa, fs, gr, grT, xx, blocks } = inputs;
    const z = tf.matMul(xa, fs);
    time(`stats: transpose(r) · gr${backend === 'wasm' ? '  [chosen]' : ''}`, () =>
      tf.tidy(() => tf.matMul(tf.transpose(r), gr)),
    );
    time(`stats: matMul(r, gr, transposeA)${backend === 'wasm' ? '' : '  [chosen]'}`, () => tf.matMul(r, gr, true, false));
    time('stats: grᵀ · r (features stored transposed)', () => tf.matMul(grT, r));
    time('Σ r x xᵀ: rᵀ · (x_i x_j)_{i≥j}, as the stats above  [chosen]', () =>
      tf.tidy(() => (backend === 'wasm' ? tf.matMul(tf.transpose(r), xx) : tf.matMul(r, xx, true, false))),
    );
    time('Σ r x xᵀ: rank-3 (r ⊙ x)ᵀ x, T batches', () =>
      tf.tidy(() => {
        const rx = tf.mul(tf.reshape(tf.transpose(r), [T, c, 1]), tf.reshape(x, [1, c, D]));
        return tf.matMul(rx, tf.tile(tf.reshape(x, [1, c, D]), [T, 1, 1]), true, false);
      }),
    );
    time('quad form: xa · F̃ (c × T·D)', () => tf.matMul(xa, fs));
    time('block sum: reshape + sum  [chosen]', () => tf.tidy(() => tf.sum(tf.reshape(tf.square(z), [c, T, D]), 2)));
    time('block sum: square · 0/1 block matrix', () => tf.tidy(() => tf.matMul(tf.square(z), blocks)));
    time('lse + r: max, sub, exp, sum, div, log  [chosen]', () =>
      tf.tidy(() => {
        const m = tf.max(r, 1, true);
        const e = tf.exp(tf.sub(r, m));
        const s = tf.sum(e, 1, true);
        return tf.concat([tf.div(e, s), tf.add(m, tf.log(s))], 1);
      }),
    );
    time('lse + r: tf.softmax + tf.logSumExp', () =>
      tf.tidy(() => tf.concat([tf.softmax(r), tf.logSumExp(r, 1, true)], 1)),
    );
    tf.dispose([z, ...Object.values(inputs)]);
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
  console.log('kernel          rows/s  best step ms  median ms  prepare ms  × reference');
  for (const r of results)
    console.log(
      `${r.name.padEnd(12)} ${Math.round(r.rowsPerSecond).toString().padStart(9)} ${r.stepMs.toFixed(1).padStart(13)} ` +
        `${r.medianStepMs.toFixed(1).padStart(10)} ${r.prepareMs.toFixed(1).padStart(11)} ${r.speedup.toFixed(1).padStart(12)}`,
    );
  if (process.argv.includes('--alternatives')) {
    console.log('\nformulations (best ms; one chunk of 4096 rows unless stated)');
    for (const a of await benchAlternatives()) console.log(`${a.backend.padEnd(5)} ${a.ms.toFixed(2).padStart(9)}  ${a.what}`);
  }
}
