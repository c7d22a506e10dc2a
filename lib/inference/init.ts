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
  /** Lloyd iterations after seeding. @default 10 */
  lloydIterations?: number;
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

/** k-means++ seeding (Arthur & Vassilvitskii 2007) followed by Lloyd iterations; returns labels. */
export function kmeansPlusPlus(f: Float64Array, n: number, dims: number, k: number, random: Random, lloyd: number): Int32Array {
  const centers = new Float64Array(k * dims);
  const nearest = new Float64Array(n).fill(Infinity);
  let chosen = random.int(n);
  for (let c = 0; c < k; c++) {
    centers.set(f.subarray(chosen * dims, (chosen + 1) * dims), c * dims);
    let total = 0;
    for (let i = 0; i < n; i++) total += (nearest[i] = Math.min(nearest[i], squaredDistance(f, i, centers, c, dims)));
    if (c + 1 === k) break;
    let target = random.uniform() * total;
    chosen = n - 1;
    for (let i = 0; i < n; i++) if ((target -= nearest[i]) <= 0) { chosen = i; break; }
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

export function initialize<P>(spec: ModelSpec, sample: Batch, kernel: Kernel<P>, options: InitOptions): InitResult {
  const { f, dims } = kmeansFeatures(spec, sample);
  const prepared = [{ n: sample.n, data: kernel.prepare(sample) }];
  const prior: GlobalState = { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) };
  let best: InitResult | undefined;
  const restartElbos: number[] = [];
  try {
    for (let r = 0; r < options.restarts; r++) {
      const k = Math.min(initialClusters(spec.T, r), sample.n);
      const labels = kmeansPlusPlus(f, sample.n, dims, k, createRandom(options.seed, r), options.lloydIterations ?? 10);
      const start = sortBySize(spec, batchUpdate(spec, prior, hardAssignmentStats(spec, sample, labels)));
      const fit = batchVb(spec, start, kernel, prepared, { maxIterations: options.iterations ?? 15, tolerance: 1e-6 });
      restartElbos.push(fit.elbo);
      if (!best || fit.elbo > best.elbo) best = { state: fit.state, elbo: fit.elbo, restartElbos };
    }
  } finally {
    kernel.release(prepared[0].data);
  }
  return { ...best!, restartElbos };
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
