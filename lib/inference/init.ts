/**
 * Initialization: k-means++ on a sample of [features, y] (standardized), a few Lloyd iterations,
 * then batch VB on the sample from those hard assignments. Several restarts; the highest sample
 * ELBO wins. Restart i always uses random stream i, so adding restarts never lowers the chosen ELBO.
 */
import type { Batch, Kernel } from '../kernel/types.js';
import { createRandom, type Random } from '../math/random.js';
import { initialAlpha, sortBySize, type GlobalState } from '../model/posterior.js';
import { layoutOf, priorCoordinates, type ModelSpec } from '../model/spec.js';
import { batchUpdate, batchVb } from './vb.js';

export interface InitOptions {
  restarts: number;
  seed: number;
  /** Batch VB iterations on the sample per restart. @default 15 */
  iterations?: number;
  /** Lloyd iterations after seeding. @default 20 */
  lloydIterations?: number;
  /** Rows of the sample the restarts are scored on. @default 10 000 */
  scoreRows?: number;
}

export interface InitResult {
  /** The best restart's state on the sample's scale (λ0 + S_sample). */
  state: GlobalState;
  /** Its sample ELBO. */
  elbo: number;
  /** Every restart's sample ELBO, in order. */
  restartElbos: number[];
}

/** Rows of the k-means feature matrix: x (or r when conditional-only) and y. Shape (n, F). */
function kmeansFeatures(spec: ModelSpec, batch: Batch): { f: Float64Array; dims: number } {
  const useX = spec.covariateModel && spec.D > 0;
  const width = useX ? spec.D : spec.P - 1;
  const dims = width + 1;
  const f = new Float64Array(batch.n * dims);
  for (let n = 0; n < batch.n; n++) {
    for (let i = 0; i < width; i++) f[n * dims + i] = useX ? batch.x[n * spec.D + i] : batch.u[n * spec.P + i];
    f[n * dims + width] = batch.y[n];
  }
  return { f, dims };
}

function squaredDistance(f: Float64Array, n: number, centers: Float64Array, c: number, dims: number): number {
  let s = 0;
  for (let i = 0; i < dims; i++) {
    const d = f[n * dims + i] - centers[c * dims + i];
    s += d * d;
  }
  return s;
}

/**
 * Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; the greedy variant of scikit-learn:
 * 2 + ⌊ln k⌋ candidates per step, keep the one that lowers the potential most), then Lloyd
 * iterations; returns labels.
 */
export function kmeansPlusPlus(f: Float64Array, n: number, dims: number, k: number, random: Random, lloyd: number): Int32Array {
  const centers = new Float64Array(k * dims);
  let nearest = new Float64Array(n).fill(Infinity);
  let candidateNearest = new Float64Array(n);
  let bestNearest = new Float64Array(n);
  const trials = 2 + Math.floor(Math.log(k));
  const distanceTo = (row: number, i: number) => {
    let s = 0;
    for (let j = 0; j < dims; j++) {
      const d = f[i * dims + j] - f[row * dims + j];
      s += d * d;
    }
    return s;
  };
  let total = Infinity;
  for (let c = 0; c < k; c++) {
    let bestRow = -1;
    let bestTotal = Infinity;
    for (let t = 0; t < (c === 0 ? 1 : trials); t++) {
      let row = random.int(n);
      if (c > 0) {
        let target = random.uniform() * total;
        row = n - 1;
        for (let i = 0; i < n; i++) if ((target -= nearest[i]) <= 0) { row = i; break; }
      }
      let sum = 0;
      for (let i = 0; i < n; i++) sum += (candidateNearest[i] = Math.min(nearest[i], distanceTo(row, i)));
      if (sum < bestTotal) {
        bestTotal = sum;
        bestRow = row;
        [bestNearest, candidateNearest] = [candidateNearest, bestNearest];
      }
    }
    centers.set(f.subarray(bestRow * dims, (bestRow + 1) * dims), c * dims);
    [nearest, bestNearest] = [bestNearest, nearest];
    total = bestTotal;
  }
  const labels = new Int32Array(n);
  const sums = new Float64Array(k * dims);
  const counts = new Float64Array(k);
  for (let it = 0; it <= lloyd; it++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const d = squaredDistance(f, i, centers, c, dims);
        if (d < bestD) { bestD = d; best = c; }
      }
      if (labels[i] !== best) changed = true;
      labels[i] = best;
    }
    if (it === lloyd || (it > 0 && !changed)) break;
    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      counts[labels[i]]++;
      for (let j = 0; j < dims; j++) sums[labels[i] * dims + j] += f[i * dims + j];
    }
    for (let c = 0; c < k; c++) if (counts[c] > 0) for (let j = 0; j < dims; j++) centers[c * dims + j] = sums[c * dims + j] / counts[c];
  }
  return labels;
}

/** Sufficient statistics of hard assignments (r_nk ∈ {0, 1}), gaussian weights for the response. */
/** Several k-means++ runs (as scikit-learn's n_init), the lowest within-cluster sum of squares wins. */
export function bestKmeans(f: Float64Array, n: number, dims: number, k: number, random: Random, lloyd: number, runs = 3): Int32Array {
  let best: Int32Array | undefined;
  let bestInertia = Infinity;
  for (let run = 0; run < runs; run++) {
    const labels = kmeansPlusPlus(f, n, dims, k, random, lloyd);
    const centers = new Float64Array(k * dims);
    const counts = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      counts[labels[i]]++;
      for (let j = 0; j < dims; j++) centers[labels[i] * dims + j] += f[i * dims + j];
    }
    for (let c = 0; c < k; c++) for (let j = 0; j < dims; j++) centers[c * dims + j] /= Math.max(1, counts[c]);
    let inertia = 0;
    for (let i = 0; i < n; i++) inertia += squaredDistance(f, i, centers, labels[i], dims);
    if (inertia < bestInertia) {
      bestInertia = inertia;
      best = labels;
    }
  }
  return best!;
}

export function hardAssignmentStats(spec: ModelSpec, batch: Batch, labels: Int32Array): Float64Array {
  const { D, P } = spec;
  const layout = layoutOf(spec);
  const stats = new Float64Array(layout.length);
  for (let n = 0; n < batch.n; n++) {
    const k = labels[n];
    const y = batch.y[n];
    stats[layout.count + k] += 1;
    for (let i = 0; i < D; i++) {
      const xi = batch.x[n * D + i];
      stats[layout.sx + k * D + i] += xi;
      for (let j = 0; j < D; j++) stats[layout.sxx + k * D * D + i * D + j] += xi * batch.x[n * D + j];
    }
    // Bernoulli: λ(0) = 1/8, so 2 λ(ξ) u uᵀ = u uᵀ / 4 and the target enters as y − ½.
    const uuWeight = spec.family === 'gaussian' ? 1 : 0.25;
    const yWeight = spec.family === 'gaussian' ? y : y - 0.5;
    for (let i = 0; i < P; i++) {
      const ui = batch.u[n * P + i];
      stats[layout.syu + k * P + i] += yWeight * ui;
      for (let j = 0; j < P; j++) stats[layout.suu + k * P * P + i * P + j] += uuWeight * ui * batch.u[n * P + j];
    }
    if (spec.family === 'gaussian') stats[layout.syy + k] += y * y;
  }
  return stats;
}

/**
 * Seeds of restart r: all T components first, then a ladder 2, 4, 8, …: with many seeds a
 * conditional-only mixture of regressions starts as many local line pieces that VB merges only
 * slowly; fewer seeds let the sample ELBO pick a coarser start when it fits better.
 */
export function initialClusters(T: number, restart: number): number {
  if (restart === 0) return T;
  return Math.min(T, 2 ** restart);
}

/** Every ⌈n/m⌉-th row: a subsample spread over the whole sample (whose rows come in file chunks). */
export function strided(batch: Batch, m: number): Batch {
  if (batch.n <= m) return batch;
  const stride = Math.ceil(batch.n / m);
  const n = Math.ceil(batch.n / stride);
  const D = batch.x.length / batch.n;
  const P = batch.u.length / batch.n;
  const out: Batch = { n, x: new Float64Array(n * D), u: new Float64Array(n * P), y: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const src = i * stride;
    out.x.set(batch.x.subarray(src * D, (src + 1) * D), i * D);
    out.u.set(batch.u.subarray(src * P, (src + 1) * P), i * P);
    out.y[i] = batch.y[src];
  }
  return out;
}

/** Batch VB on one in-memory batch, with the kernel's prepared form freed afterwards. */
function fitOn<P>(spec: ModelSpec, start: GlobalState, kernel: Kernel<P>, batch: Batch, iterations: number) {
  const prepared = [{ n: batch.n, data: kernel.prepare(batch) }];
  try {
    return batchVb(spec, start, kernel, prepared, { maxIterations: iterations, tolerance: 1e-6 });
  } finally {
    kernel.release(prepared[0].data);
  }
}

/**
 * Restarts are scored on a strided subsample of at most `scoreRows` rows (cheap), then the best
 * is refined on the whole sample. Its sample ELBO is what the run reports.
 */
export function initialize<P>(spec: ModelSpec, sample: Batch, kernel: Kernel<P>, options: InitOptions): InitResult {
  const scoring = strided(sample, options.scoreRows ?? 10_000);
  const { f, dims } = kmeansFeatures(spec, scoring);
  const iterations = options.iterations ?? 15;
  const prior: GlobalState = { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) };
  const prepared = [{ n: scoring.n, data: kernel.prepare(scoring) }];
  let best: { state: GlobalState; elbo: number } | undefined;
  const restartElbos: number[] = [];
  try {
    for (let r = 0; r < options.restarts; r++) {
      const k = Math.min(initialClusters(spec.T, r), scoring.n);
      const labels = bestKmeans(f, scoring.n, dims, k, createRandom(options.seed, r), options.lloydIterations ?? 20);
      const start = sortBySize(spec, batchUpdate(spec, prior, hardAssignmentStats(spec, scoring, labels)));
      const fit = batchVb(spec, start, kernel, prepared, { maxIterations: iterations, tolerance: 1e-6 });
      restartElbos.push(fit.elbo);
      if (!best || fit.elbo > best.elbo) best = fit;
    }
  } finally {
    kernel.release(prepared[0].data);
  }
  if (scoring === sample) return { ...best!, restartElbos };
  // λ of the subsample scaled to the sample, then refined there.
  const scaled = scaleToRows(spec, best!.state, scoring.n, sample.n);
  const refined = fitOn(spec, scaled, kernel, sample, iterations);
  return { state: refined.state, elbo: refined.elbo, restartElbos };
}

/**
 * Scale sample statistics up to the whole data: λ = λ0 + (N / n)(λ_sample − λ0), i.e. the SVI
 * target with the sample as the minibatch (Hoffman et al. 2013), then sort by size.
 */
export function scaleToRows(spec: ModelSpec, state: GlobalState, sampleRows: number, totalRows: number): GlobalState {
  const lambda0 = priorCoordinates(spec);
  const factor = totalRows / sampleRows;
  const lambda = state.lambda.map((v, i) => lambda0[i] + factor * (v - lambda0[i]));
  return sortBySize(spec, { lambda, alpha: state.alpha });
}
