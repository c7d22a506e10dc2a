/**
 * The TensorFlow.js kernel against the float64 reference (the oracle), on the wasm and cpu
 * backends, and the backend loader.
 *
 * Tolerances (float32 has ε = 6e-8):
 * - statistics: each entry within 1e-4 × its block's scale, where the scale is Σ_n of the largest
 *   |summand| of that block in row n (Σ_n max_i |x_ni| for Σ r x, Σ_n max_i x_ni² for Σ r x xᵀ, …).
 *   A float32 sum's error is proportional to the sum of the absolute terms, not to the result,
 *   which can cancel to ~0 (Σ r x over standardized x is 0 when T = 1). Measured: ≤ 4e-7.
 * - Σ_n logsumexp: relative 1e-5 (measured ≤ 7e-8; summed in float64 on the host).
 * - responsibilities: absolute 1e-4 (measured ≤ 5e-6 on the tight fits below, ≤ 1e-6 elsewhere).
 * - Where the statistics feed a small difference of large numbers (W⁻¹ = Ψ − β m mᵀ and the noise
 *   rate of a tight cluster far from the origin), the derived quantities themselves: 1e-3 relative
 *   (measured ≤ 8e-7 for W⁻¹, ≤ 4e-6 for b; raw float32 moments miss W⁻¹ by 7e-3).
 * So each bound leaves a margin of 20× or more over what float32 actually loses here.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/config.js';
import { batchVb } from '../lib/inference/vb.js';
import { BackendUnavailableError, loadKernel } from '../lib/kernel/backend.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import { createTfjsKernel } from '../lib/kernel/tfjs.js';
import type { Batch, Kernel, LocalStepResult } from '../lib/kernel/types.js';
import { batchCoordinates, derive, initialAlpha, localParams, type LocalParams } from '../lib/model/posterior.js';
import { noiseOf } from '../lib/model/families/gaussian.js';
import { layoutOf, specFromConfig, type ModelSpec } from '../lib/model/spec.js';
import { createRandom as random } from '../lib/math/random.js';
import { hardAssignmentStats } from '../lib/inference/init.js';
import { standardizeColumns } from '../examples/generate.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');



/**
 * Standardized data from `clusters` clusters: R = P − 1 regression columns r (u = [r, 1]) and,
 * when D > 0, the clustering columns x = the first D of them. y follows each cluster's regression
 * (gaussian, standardized) or its logistic model (0/1).
 */
function makeBatch(
  n: number,
  D: number,
  P: number,
  family: 'gaussian' | 'bernoulli',
  options: { seed?: number; clusters?: number; spread?: number; noise?: number } = {},
): Batch {
  const { seed = 1, clusters = 3, spread = 0.4, noise = 0.2 } = options;
  const rng = random(seed);
  const R = Math.max(P - 1, D);
  const centres = Array.from({ length: clusters }, () => Array.from({ length: R }, () => 2 * rng.normal()));
  const coefs = Array.from({ length: clusters }, () => Array.from({ length: P }, () => rng.normal()));
  const cols = new Float64Array(n * R);
  for (let i = 0; i < n; i++) for (let j = 0; j < R; j++) cols[i * R + j] = centres[i % clusters][j] + spread * rng.normal();
  standardizeColumns(cols, n, R);
  const x = new Float64Array(n * D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) x[i * D + j] = cols[i * R + j];
    for (let j = 0; j < P - 1; j++) u[i * P + j] = cols[i * R + j];
    u[i * P + P - 1] = 1;
    let eta = 0;
    for (let j = 0; j < P; j++) eta += coefs[i % clusters][j] * u[i * P + j];
    y[i] = family === 'gaussian' ? eta + noise * rng.normal() : rng.uniform() < 1 / (1 + Math.exp(-2 * eta)) ? 1 : 0;
  }
  if (family === 'gaussian') standardizeColumns(y, n, 1);
  return { n, x, u, y };
}

function makeSpec(family: 'gaussian' | 'bernoulli', T: number, D: number, P: number, covariateModel: boolean): ModelSpec {
  return specFromConfig(parseConfig({ target: 'y', family, components: T, covariateModel }), D, P);
}

/** Statistics of random hard assignments (init.ts; bernoulli: with λ(ξ) = 1/8). */
function randomAssignmentStats(spec: ModelSpec, batch: Batch, seed: number): Float64Array {
  const rng = random(seed);
  const labels = Int32Array.from({ length: batch.n }, () => rng.int(spec.T));
  return hardAssignmentStats(spec, batch, labels);
}

/** LocalParams of the posterior λ0 + S(random hard assignments), optionally after batch-VB sweeps. */
function makeParams(spec: ModelSpec, batch: Batch, seed = 7, sweeps = 0): LocalParams {
  const state = { lambda: batchCoordinates(spec, randomAssignmentStats(spec, batch, seed)), alpha: initialAlpha(spec) };
  if (sweeps === 0) return localParams(derive(spec, state));
  const fit = batchVb(spec, state, referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: sweeps, tolerance: 0 });
  return localParams(derive(spec, fit.state));
}

/** Per block of the layout: [name, start, end, scale] with the scale of the module comment. */
function blockScales(spec: ModelSpec, batch: Batch): [string, number, number, number][] {
  const layout = layoutOf(spec);
  const { D, P } = spec;
  const gaussian = spec.family === 'gaussian';
  const s = { sx: 0, sxx: 0, suu: 0, syu: 0, syy: 0 };
  for (let i = 0; i < batch.n; i++) {
    let mx = 0;
    let mu = 0;
    for (let a = 0; a < D; a++) mx = Math.max(mx, Math.abs(batch.x[i * D + a]));
    for (let a = 0; a < P; a++) mu = Math.max(mu, Math.abs(batch.u[i * P + a]));
    const y = gaussian ? batch.y[i] : batch.y[i] - 0.5;
    s.sx += mx;
    s.sxx += mx * mx;
    s.suu += mu * mu;
    s.syu += Math.abs(y) * mu;
    s.syy += y * y;
  }
  return [
    ['count', layout.count, layout.sx, batch.n],
    ['sx', layout.sx, layout.sxx, s.sx],
    ['sxx', layout.sxx, layout.suu, s.sxx],
    ['suu', layout.suu, layout.syu, s.suu],
    ['syu', layout.syu, layout.syy, s.syu],
    ['syy', layout.syy, layout.length, s.syy],
  ];
}

/** Largest error per block relative to its scale, the relative logLik error, the largest |Δr|. */
function compare(spec: ModelSpec, batch: Batch, ref: LocalStepResult, got: LocalStepResult) {
  const blocks: Record<string, number> = {};
  for (const [name, start, end, scale] of blockScales(spec, batch)) {
    let err = 0;
    for (let i = start; i < end; i++) err = Math.max(err, Math.abs(got.stats[i] - ref.stats[i]));
    blocks[name] = scale > 0 ? err / scale : err;
  }
  let resp = 0;
  for (let i = 0; i < ref.responsibilities!.length; i++)
    resp = Math.max(resp, Math.abs(got.responsibilities![i] - ref.responsibilities![i]));
  return { blocks, logLik: Math.abs(got.logLik - ref.logLik) / Math.abs(ref.logLik), resp };
}

function expectClose(spec: ModelSpec, batch: Batch, ref: LocalStepResult, got: LocalStepResult, respTol = 1e-4) {
  expect(got.stats.length).toBe(ref.stats.length);
  const c = compare(spec, batch, ref, got);
  for (const [name, err] of Object.entries(c.blocks)) expect(err, `block ${name}`).toBeLessThanOrEqual(1e-4);
  expect(c.logLik, 'logLik, relative').toBeLessThanOrEqual(1e-5);
  expect(c.resp, 'responsibilities').toBeLessThanOrEqual(respTol);
  if (spec.family === 'bernoulli') for (let k = 0; k < spec.T; k++) expect(got.stats[layoutOf(spec).syy + k]).toBe(0);
  return c;
}

const BACKENDS = ['wasm', 'cpu'] as const;

/** The local step of `batch` on a kernel, with responsibilities: prepare, step, release. */
function stepOn<P>(kernel: Kernel<P>, params: LocalParams, batch: Batch | Batch<Float32Array>): LocalStepResult {
  const prepared = kernel.prepare(batch);
  try {
    return kernel.localStep(params, prepared, { responsibilities: true });
  } finally {
    kernel.release(prepared);
  }
}

/** The fast kernel's local step is the float64 reference's within float32 tolerance (expectClose). */
function expectMatchesReference<P>(kernel: Kernel<P>, spec: ModelSpec, batch: Batch, params: LocalParams): void {
  expectClose(spec, batch, stepOn(referenceKernel, params, batch), stepOn(kernel, params, batch));
}

beforeAll(async () => {
  for (const b of BACKENDS) await loadKernel(b);
});

describe.each(BACKENDS)('tfjs-%s kernel vs the float64 reference', (backend) => {
  // The kernel processes rows in chunks; 384 makes 1000 rows three chunks (384, 384, 232).
  const kernel = createTfjsKernel(backend, { chunkRows: 384 });
  const cases: { family: 'gaussian' | 'bernoulli'; T: number; covariateModel: boolean; D: number; P: number }[] = [];
  for (const family of ['gaussian', 'bernoulli'] as const)
    for (const T of [1, 5])
      for (const [covariateModel, D, P] of [
        [false, 0, 4],
        [true, 1, 2],
        [true, 4, 5],
      ] as const)
        cases.push({ family, T, covariateModel, D, P });

  it.each(cases)('$family, T = $T, covariate model $covariateModel, D = $D, P = $P', ({ family, T, covariateModel, D, P }) => {
    const batch = makeBatch(1000, D, P, family, { seed: 11 * T + D });
    const spec = makeSpec(family, T, D, P, covariateModel);
    const params = makeParams(spec, batch, 3 + T);
    const ref = referenceKernel.localStep(params, batch, { responsibilities: true });
    const prepared = kernel.prepare(batch);
    try {
      const got = kernel.localStep(params, prepared, { responsibilities: true });
      expectClose(spec, batch, ref, got);
      // A second call on the same prepared batch gives the same answer.
      expect(kernel.localStep(params, prepared).stats).toEqual(got.stats);
    } finally {
      kernel.release(prepared);
    }
  });

  it.each([
    { family: 'gaussian', covariateModel: true },
    { family: 'gaussian', covariateModel: false },
    { family: 'bernoulli', covariateModel: true },
    { family: 'bernoulli', covariateModel: false },
  ] as const)(
    '$family, covariate model $covariateModel: a tight, fitted posterior stays within float32 tolerance',
    ({ family, covariateModel }) => {
      // 20 batch-VB sweeps on data with cluster spread 0.03 and noise 0.005: E[τ] and ν W are large,
      // where an expanded quadratic form would lose its accuracy to cancellation.
      const D = covariateModel ? 4 : 0;
      const batch = makeBatch(1500, D, 5, family, { seed: 5, clusters: 4, spread: 0.03, noise: 0.005 });
      const spec = makeSpec(family, 5, D, 5, covariateModel);
      expectMatchesReference(kernel, spec, batch, makeParams(spec, batch, 9, 20));
    },
  );

  it.each([
    { family: 'gaussian', covariateModel: true },
    { family: 'gaussian', covariateModel: false },
    { family: 'bernoulli', covariateModel: true },
  ] as const)('$family, covariate model $covariateModel, two shared slopes: a fitted tied posterior stays within float32 tolerance', ({ family, covariateModel }) => {
    // The tied posterior reaches the kernel only through θ_k and its covariance (families/shared.ts):
    // the fused columns must carry them as they carry an untied one.
    const D = covariateModel ? 4 : 0;
    const batch = makeBatch(1500, D, 5, family, { seed: 6, clusters: 4, spread: 0.1, noise: 0.05 });
    const spec: ModelSpec = { ...makeSpec(family, 5, D, 5, covariateModel), shared: [0, 2] };
    expectMatchesReference(kernel, spec, batch, makeParams(spec, batch, 9, 15));
  });

  it('ignores x in conditional-only mode when the batch carries it', () => {
    const withX = makeBatch(500, 3, 4, 'gaussian', { seed: 21 });
    const spec = makeSpec('gaussian', 5, 3, 4, false);
    const params = makeParams(spec, { ...withX, x: new Float64Array(0) });
    const ref = referenceKernel.localStep(params, withX, { responsibilities: true });
    const prepared = kernel.prepare(withX);
    try {
      expectClose(spec, withX, ref, kernel.localStep(params, prepared, { responsibilities: true }));
    } finally {
      kernel.release(prepared);
    }
  });

  it('frees every tensor it makes, returns responsibilities only when asked, handles n = 0', () => {
    const before = tf.memory().numTensors;
    const batch = makeBatch(900, 2, 3, 'bernoulli', { seed: 4 });
    const spec = makeSpec('bernoulli', 5, 2, 3, true);
    const params = makeParams(spec, batch);
    const prepared = kernel.prepare(batch);
    const during = tf.memory().numTensors;
    const result = kernel.localStep(params, prepared);
    expect(result.responsibilities).toBeUndefined();
    expect(tf.memory().numTensors).toBe(during);
    kernel.release(prepared);
    kernel.release(prepared); // twice is harmless
    expect(tf.memory().numTensors).toBe(before);
    expect(() => kernel.localStep(params, prepared)).toThrow(/released/);

    const empty = kernel.prepare({ n: 0, x: new Float64Array(0), u: new Float64Array(0), y: new Float64Array(0) });
    const none = kernel.localStep(params, empty, { responsibilities: true });
    expect(none.logLik).toBe(0);
    expect(Array.from(none.stats).every((v) => v === 0)).toBe(true);
    expect(none.responsibilities).toHaveLength(0);
    kernel.release(empty);
  });

  it.each([
    { D: 4, P: 5, covariateModel: true },
    { D: 0, P: 4, covariateModel: false },
  ])('prepare() keeps at most D + P + 3 float32 values per row and nothing else (D = $D, P = $P)', ({ D, P, covariateModel }) => {
    const batch = makeBatch(1000, D, P, 'gaussian', { seed: 17 });
    const spec = makeSpec('gaussian', 5, D, P, covariateModel);
    const params = makeParams(spec, batch);
    const before = tf.memory();
    const prepared = kernel.prepare(batch);
    try {
      let values = 0;
      for (const chunk of prepared.chunks)
        for (const t of Object.values(chunk)) if (t instanceof tf.Tensor) values += t.size;
      expect(values).toBeLessThanOrEqual(batch.n * (D + P + 3));
      // no other tensor was allocated, and a local step leaves none behind
      expect(tf.memory().numBytes - before.numBytes).toBe(4 * values);
      kernel.localStep(params, prepared);
      expect(tf.memory().numBytes - before.numBytes).toBe(4 * values);
    } finally {
      kernel.release(prepared);
    }
  });

  it.runIf(backend === 'wasm')(
    'wasm: local steps add nothing per row to the wasm heap beyond the prepared rows (no packed copy of them is cached)',
    () => {
      // XNNPACK caches a packed copy of a matmul's right operand for that tensor's lifetime; a
      // prepared tensor used there would make every cached batch cost about twice its rows. The
      // heap only grows (freed blocks are reused), so warm up on one batch (the per-chunk
      // temporaries), then prepare and step a second one large enough (~38k rows) that any such
      // per-row cost outgrows the free space left by earlier tests: the kernel before this
      // formulation grew the heap by ~800–1500 bytes per row here, this one by ≤ 92.
      const heap = () => (tf.findBackend('wasm') as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
      const D = 10;
      const P = 11;
      const spec = makeSpec('gaussian', 20, D, P, true);
      const small = makeBatch(3 * 384, D, P, 'gaussian', { seed: 31, clusters: 8 });
      const large = makeBatch(100 * 384, D, P, 'gaussian', { seed: 32, clusters: 8 });
      const params = makeParams(spec, small);
      const first = kernel.prepare(small);
      let second: ReturnType<typeof kernel.prepare> | null = null;
      try {
        kernel.localStep(params, first);
        kernel.localStep(params, first);
        const h0 = heap();
        second = kernel.prepare(large);
        kernel.localStep(params, second);
        kernel.localStep(params, second);
        const perRow = (heap() - h0) / large.n;
        expect(perRow).toBeLessThanOrEqual(2 * 4 * (D + P + 3));
      } finally {
        kernel.release(first);
        if (second) kernel.release(second);
      }
    },
  );

  it('rejects a batch whose shape does not match the model', () => {
    const batch = makeBatch(50, 2, 3, 'gaussian');
    const prepared = kernel.prepare(batch);
    try {
      const params = makeParams(makeSpec('gaussian', 2, 3, 4, true), makeBatch(50, 3, 4, 'gaussian'));
      expect(() => kernel.localStep(params, prepared)).toThrow(/D = 2, P = 3; the model expects D = 3, P = 4/);
    } finally {
      kernel.release(prepared);
    }
  });
});

/**
 * Tight clusters far from the origin: means at ±3 (standardized scale), within-cluster sd 0.02,
 * each with its own regression, noise sd 0.01. Returns the batch and each row's cluster.
 */
function farTightBatch(n: number, D: number, clusters: number, seed: number): { batch: Batch; labels: Int32Array } {
  const rng = random(seed);
  const P = D + 1;
  const coefs = Array.from({ length: clusters }, () => Array.from({ length: P }, () => rng.normal()));
  const x = new Float64Array(n * D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = (labels[i] = i % clusters);
    for (let j = 0; j < D; j++) {
      const centre = (c >> j % 2) & 1 ? 3 : -3;
      x[i * D + j] = centre + 0.02 * rng.normal();
      u[i * P + j] = x[i * D + j];
    }
    u[i * P + D] = 1;
    let eta = 0;
    for (let j = 0; j < P; j++) eta += coefs[c][j] * u[i * P + j];
    y[i] = eta + 0.01 * rng.normal();
  }
  return { batch: { n, x, u, y }, labels };
}

/**
 * The statistics of `resp` as a float32 kernel without centring would form them: raw moments
 * (Σ r x xᵀ, Σ r y u, Σ r y², …) of float32 features, summed in float32 in row order over chunks
 * of `chunk` rows, the chunks added in float64.
 */
function rawFloat32Stats(spec: ModelSpec, batch: Batch, resp: Float64Array, chunk: number): Float64Array {
  const { T, D, P } = spec;
  const f = Math.fround;
  const layout = layoutOf(spec);
  const stats = new Float64Array(layout.length);
  const acc = new Float64Array(layout.length);
  for (let start = 0; start < batch.n; start += chunk) {
    acc.fill(0);
    for (let n = start; n < Math.min(batch.n, start + chunk); n++) {
      const y = batch.y[n];
      for (let k = 0; k < T; k++) {
        const r = f(resp[n * T + k]);
        const add = (at: number, feature: number) => (acc[at] = f(acc[at] + f(r * f(feature))));
        add(layout.count + k, 1);
        for (let i = 0; i < D; i++) {
          add(layout.sx + k * D + i, batch.x[n * D + i]);
          for (let j = 0; j < D; j++) add(layout.sxx + k * D * D + i * D + j, batch.x[n * D + i] * batch.x[n * D + j]);
        }
        for (let i = 0; i < P; i++) {
          add(layout.syu + k * P + i, y * batch.u[n * P + i]);
          for (let j = 0; j < P; j++) add(layout.suu + k * P * P + i * P + j, batch.u[n * P + i] * batch.u[n * P + j]);
        }
        add(layout.syy + k, y * y);
      }
    }
    for (let i = 0; i < stats.length; i++) stats[i] += acc[i];
  }
  return stats;
}

/** Per component: W_k⁻¹ (max-norm) and b_k from `stats`, relative to the same from `ref`; the largest of each. */
function derivedErrors(spec: ModelSpec, ref: Float64Array, stats: Float64Array): { wishartInverse: number; noiseRate: number } {
  const { T, D } = spec;
  const alpha = initialAlpha(spec);
  const a = derive(spec, { lambda: batchCoordinates(spec, ref), alpha });
  const b = derive(spec, { lambda: batchCoordinates(spec, stats), alpha });
  let wishartInverse = 0;
  let noiseRate = 0;
  for (let k = 0; k < T; k++) {
    let scale = 0;
    let err = 0;
    for (let i = 0; i < D * D; i++) {
      scale = Math.max(scale, Math.abs(a.wishartInverse[k * D * D + i]));
      err = Math.max(err, Math.abs(b.wishartInverse[k * D * D + i] - a.wishartInverse[k * D * D + i]));
    }
    wishartInverse = Math.max(wishartInverse, err / scale);
    noiseRate = Math.max(noiseRate, Math.abs(noiseOf(b, k).rate - noiseOf(a, k).rate) / noiseOf(a, k).rate);
  }
  return { wishartInverse, noiseRate };
}

describe('float32 rows (a shard\'s binary copy) go into a kernel as they are', () => {
  it.each(['reference', ...BACKENDS] as const)('%s: the same local step as their float64 widening, to the bit', (name) => {
    const wide = makeBatch(1000, 4, 5, 'gaussian', { seed: 3 });
    const narrow: Batch<Float32Array> = { n: wide.n, x: Float32Array.from(wide.x), u: Float32Array.from(wide.u), y: Float32Array.from(wide.y) };
    const widened: Batch = { n: narrow.n, x: Float64Array.from(narrow.x), u: Float64Array.from(narrow.u), y: Float64Array.from(narrow.y) };
    const params = makeParams(makeSpec('gaussian', 5, 4, 5, true), widened, 8);
    const step = (batch: Batch | Batch<Float32Array>) =>
      name === 'reference' ? stepOn(referenceKernel, params, batch) : stepOn(createTfjsKernel(name, { chunkRows: 384 }), params, batch);
    const a = step(narrow);
    const b = step(widened);
    expect(a.logLik).toBe(b.logLik);
    expect(a.stats).toEqual(b.stats);
    expect(a.responsibilities).toEqual(b.responsibilities);
    // The float64 reference sees the rounding (its float64 rows give another answer); tfjs rounds to float32 itself.
    if (name === 'reference') expect(step(wide).logLik).not.toBe(a.logLik);
  });
});

describe('tight clusters far from the origin: the statistics keep W⁻¹ and the noise rate', () => {
  // 2 clusters at ±3 with sd 0.02 and noise sd 0.01, 8192 rows each; the posterior of the true
  // assignments (T = 3, one component empty). W_k⁻¹ = Ψ_k − β_k m_k m_kᵀ ≈ N_k · 4e-4 I (+ the prior
  // 0.6 I) beside Ψ_k ≈ N_k · 9, and b_k ≈ N_k · 5e-5 beside Σ r y² ≈ N_k · 30: raw float32 moments
  // lose both to cancellation. Measured (largest over components, relative): W⁻¹ 6.7e-3 for raw
  // float32 moments (the kernel before centring gave exactly that on wasm, whose XNNPACK sums run in
  // row order like the emulation, and 1.7e-3 on cpu), ≤ 8e-7 for the centred statistics; b 0.29 raw,
  // ≤ 4e-6 from residual statistics.
  const D = 4;
  const P = D + 1;
  const { batch, labels } = farTightBatch(16384, D, 2, 41);
  const spec = makeSpec('gaussian', 3, D, P, true);
  const layout = layoutOf(spec);
  const truth = new Float64Array(layout.length);
  for (let n = 0; n < batch.n; n++) {
    const k = labels[n];
    truth[layout.count + k] += 1;
    for (let i = 0; i < D; i++) {
      truth[layout.sx + k * D + i] += batch.x[n * D + i];
      for (let j = 0; j < D; j++) truth[layout.sxx + k * D * D + i * D + j] += batch.x[n * D + i] * batch.x[n * D + j];
    }
    for (let i = 0; i < P; i++) {
      truth[layout.syu + k * P + i] += batch.y[n] * batch.u[n * P + i];
      for (let j = 0; j < P; j++) truth[layout.suu + k * P * P + i * P + j] += batch.u[n * P + i] * batch.u[n * P + j];
    }
    truth[layout.syy + k] += batch.y[n] ** 2;
  }
  const params = localParams(derive(spec, { lambda: batchCoordinates(spec, truth), alpha: initialAlpha(spec) }));
  const ref = referenceKernel.localStep(params, batch, { responsibilities: true });

  it('raw float32 moments (chunks of 4096 rows) miss them by more than 1e-3 relative', () => {
    const raw = derivedErrors(spec, ref.stats, rawFloat32Stats(spec, batch, ref.responsibilities!, 4096));
    expect(raw.wishartInverse).toBeGreaterThan(1e-3);
    expect(raw.noiseRate).toBeGreaterThan(1e-3);
  });

  it.each(BACKENDS)('tfjs-%s (default chunks of 4096 rows) keeps them within 1e-3 relative', (backend) => {
    const kernel = createTfjsKernel(backend);
    const prepared = kernel.prepare(batch);
    try {
      const got = kernel.localStep(params, prepared);
      const err = derivedErrors(spec, ref.stats, got.stats);
      expect(err.wishartInverse, 'W⁻¹').toBeLessThanOrEqual(1e-3);
      expect(err.noiseRate, 'noise rate b').toBeLessThanOrEqual(1e-3);
    } finally {
      kernel.release(prepared);
    }
  });
});

describe('loadKernel', () => {
  afterAll(async () => {
    await loadKernel('wasm');
  });

  it("'auto' picks wasm here (tfjs-node is not installed), with SIMD, and says why it skipped tensorflow", async () => {
    const kernel = await loadKernel('auto');
    expect(kernel.name).toBe('tfjs-wasm');
    expect(kernel.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(kernel.report.skipped).toHaveLength(1);
    expect(kernel.report.skipped[0].backend).toBe('tensorflow');
    expect(kernel.report.skipped[0].reason).toMatch(/@tensorflow\/tfjs-node is not installed/);
    expect(kernel.report.wasm).toMatchObject({ simd: true, threads: false, binary: 'tfjs-backend-wasm-simd.wasm' });
  });

  it('an explicit backend that cannot load throws an error naming it and the reason', async () => {
    const error = await loadKernel('tensorflow').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/^kernel backend 'tensorflow' is unavailable: @tensorflow\/tfjs-node is not installed/);
    // the failure is remembered, not retried
    expect(await loadKernel('tensorflow').catch((e: unknown) => e)).toBe(error);
    await expect(loadKernel('gpu' as never)).rejects.toThrow(/unknown backend 'gpu'/);
  });

  it('is idempotent, and kernels on different backends can be used side by side', async () => {
    const [a, b] = await Promise.all([loadKernel('wasm'), loadKernel('wasm')]);
    expect(a.name).toBe(b.name);
    const cpu = await loadKernel('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const batch = makeBatch(300, 2, 3, 'gaussian', { seed: 8 });
    const spec = makeSpec('gaussian', 3, 2, 3, true);
    const params = makeParams(spec, batch);
    const onWasm = a.prepare(batch); // switches to wasm
    expect(tf.getBackend()).toBe('wasm');
    const onCpu = cpu.prepare(batch); // and back
    const ref = referenceKernel.localStep(params, batch, { responsibilities: true });
    expectClose(spec, batch, ref, a.localStep(params, onWasm, { responsibilities: true }));
    expectClose(spec, batch, ref, cpu.localStep(params, onCpu, { responsibilities: true }));
    expect(() => a.localStep(params, onCpu)).toThrow(/prepared by the tfjs-cpu kernel/);
    a.release(onWasm);
    cpu.release(onCpu);
  });

  it("'reference' is the float64 reference kernel", async () => {
    const kernel = await loadKernel('reference');
    expect(kernel.name).toBe('reference');
    expect(kernel.localStep).toBe(referenceKernel.localStep);
  });
});

/** Run `code` (an ES module body) with tsx in a fresh process: the wasm backend loads once per process. */
function runIsolated(code: string, env: Record<string, string>): Promise<string> {
  const tsx = join(root, 'node_modules', '.bin', 'tsx');
  return new Promise((resolve, reject) =>
    execFile(
      tsx,
      ['--eval', `(async () => { ${code} })().catch((e) => { console.log(JSON.stringify({ error: String(e.message) })); });`],
      { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)),
    ),
  );
}

function lastJson(stdout: string): Record<string, unknown> {
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return JSON.parse(line ?? '{}') as Record<string, unknown>;
}

describe('wasm binaries next to a bundle (AWS Lambda)', () => {
  const wasmDist = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist';
  const withBinaries = mkdtempSync(join(tmpdir(), 'clusterwise-wasm-'));
  const empty = mkdtempSync(join(tmpdir(), 'clusterwise-nowasm-'));
  for (const f of readdirSync(wasmDist)) if (f.endsWith('.wasm')) copyFileSync(join(wasmDist, f), join(withBinaries, f));
  afterAll(() => {
    rmSync(withBinaries, { recursive: true, force: true });
    rmSync(empty, { recursive: true, force: true });
  });
  const script = (preference: string) => `
    const { loadKernel } = await import(${JSON.stringify(join(root, 'lib/kernel/backend.ts'))});
    const k = await loadKernel('${preference}');
    console.log(JSON.stringify({ name: k.name, report: k.report }));`;

  it('reads them from LAMBDA_TASK_ROOT when they are there, else from the package; CLUSTERWISE_WASM_DIR overrides', async () => {
    const [bundled, deployedModules, override] = await Promise.all([
      runIsolated(script('wasm'), { LAMBDA_TASK_ROOT: withBinaries }),
      runIsolated(script('wasm'), { LAMBDA_TASK_ROOT: empty }),
      runIsolated(script('wasm'), { LAMBDA_TASK_ROOT: empty, CLUSTERWISE_WASM_DIR: withBinaries }),
    ]);
    expect(lastJson(bundled)).toMatchObject({ name: 'tfjs-wasm', report: { wasm: { directory: withBinaries } } });
    expect(lastJson(deployedModules)).toMatchObject({ name: 'tfjs-wasm', report: { wasm: { directory: null } } });
    expect(lastJson(override)).toMatchObject({ name: 'tfjs-wasm', report: { wasm: { directory: withBinaries } } });
  });

  it("a folder without them is a clear error for 'wasm', and 'auto' falls back to cpu saying why", async () => {
    const [explicitOut, autoOut] = await Promise.all([
      runIsolated(script('wasm'), { CLUSTERWISE_WASM_DIR: empty }),
      runIsolated(script('auto'), { CLUSTERWISE_WASM_DIR: empty }),
    ]);
    const explicit = lastJson(explicitOut);
    expect(explicit.error).toMatch(
      new RegExp(`^kernel backend 'wasm' is unavailable: tfjs-backend-wasm-simd.wasm is not in ${empty} \\(CLUSTERWISE_WASM_DIR\\)`),
    );
    const auto = lastJson(autoOut);
    expect(auto.name).toBe('tfjs-cpu');
    expect((auto.report as { skipped: { backend: string }[] }).skipped.map((s) => s.backend)).toEqual(['tensorflow', 'wasm']);
  });
});
