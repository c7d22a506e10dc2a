/**
 * Initialization (docs/model.md §8): restarts that really differ, judged by the ELBO.
 *
 * Each restart seeds k0 components (a ladder 2, 4, 8, … up to T) in several ways: k-means++ on
 * [x, y] (conditional-only: [r, y]), k-means++ on x alone, regression lines fitted to small random
 * subsets of rows and refined by reassigning rows to the line with the smallest residual ("k-lines"),
 * and a random partition (flexmix's default start; only for k0 ≤ 4). Every seed becomes a state (hard statistics,
 * one batch update) and runs a few batch-VB iterations on a stratified random subsample (the screen); the
 * best of each restart goes on to convergence there with merge and delete moves (moves.ts); the best of those is
 * refined on the whole sample, with moves. Candidate c uses random stream c of `seed`, so adding
 * restarts never lowers the best screened ELBO.
 */
import { rowsOf } from '../kernel/batch.js';
import type { Batch, Kernel } from '../kernel/types.js';
import { createRandom, type Random } from '../math/random.js';
import { initialAlpha, sortBySize, type GlobalState } from '../model/posterior.js';
import { covariateFactorsOf } from '../model/covariates/index.js';
import { familyOf, referenceRows } from '../model/families/index.js';
import { layoutOf, priorCoordinates, type ModelSpec } from '../model/spec.js';
import { cholesky, backSubstitute, forwardSubstitute } from '../math/linalg.js';
import { acceptMove, proposeMoves } from './moves.js';
import { batchUpdate, batchVb, type Proposer } from './vb.js';

export interface InitOptions {
  restarts: number;
  seed: number;
  /** Batch-VB iterations of every candidate in the screen. @default 4 */
  iterations?: number;
  /** Lloyd (k-means, k-lines) iterations after seeding. @default 10 */
  lloydIterations?: number;
  /** Rows of the sample the candidates are screened on (stratifiedSubsample). @default 2000 */
  scoreRows?: number;
  /** Batch-VB iterations (with moves) of the winner on the sample, up to convergence. @default 200 for a sample of at most 10 000 rows (then it is usually the whole data), else 10 */
  refineIterations?: number;
  /** Relative ELBO change at which the refinement on the sample stops. @default 1e-7 */
  tolerance?: number;
  /** Called after each restart with the restarts done (for progress). */
  onRestart?: (done: number) => void;
}

export interface InitResult {
  /** The best restart's state on the sample's scale (λ0 + S_sample). */
  state: GlobalState;
  /** Its sample ELBO. */
  elbo: number;
  /** Every candidate's screened ELBO, in order (restart by restart, seeding by seeding). */
  restartElbos: number[];
  /** How the winner was seeded, e.g. "lines k0=2". */
  seeding: string;
  /** The moves the refinement accepted ('merge:j+k', 'delete:j'). */
  moves: string[];
  /** Whether the refinement on the sample converged. */
  converged: boolean;
}

/**
 * Rows of the k-means feature matrix: x (or r when conditional-only) and y, or x alone; then the
 * categorical covariates one-hot, each level's indicator scaled by √½ so that two rows differing in
 * one column are 1 apart, as a standardized column's deviation. Shape (n, F).
 */
function kmeansFeatures(spec: ModelSpec, batch: Batch, xOnly = false): { f: Float64Array; dims: number } {
  const useX = spec.covariateModel && spec.D > 0;
  const width = useX ? spec.D : xOnly ? 0 : spec.P - 1; // x alone without numeric x: the categories alone
  const J = spec.levels?.length ?? 0;
  const oneHot = J > 0 ? spec.levels!.reduce((s, l) => s + l, 0) : 0;
  const numeric = xOnly ? width : width + 1;
  const dims = numeric + oneHot;
  const f = new Float64Array(batch.n * dims);
  for (let n = 0; n < batch.n; n++) {
    for (let i = 0; i < width; i++) f[n * dims + i] = useX ? batch.x[n * spec.D + i] : batch.u[n * spec.P + i];
    if (!xOnly) f[n * dims + width] = batch.y[n];
    for (let j = 0; j < J; j++) f[n * dims + numeric + batch.categories![n * J + j]] = Math.SQRT1_2;
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

/** Sufficient statistics of hard assignments (r_nk ∈ {0, 1}), the response's at the family's hardWeights. */
export function hardAssignmentStats(spec: ModelSpec, batch: Batch, labels: Int32Array): Float64Array {
  const { D, P } = spec;
  const layout = layoutOf(spec);
  const family = familyOf(spec.family);
  const extra = referenceRows(family, spec).extra;
  const stats = new Float64Array(layout.length);
  const weights = new Float64Array(2);
  const J = spec.levels?.length ?? 0;
  const factors = covariateFactorsOf(spec).map((factor) => ({ factor, block: layout.blocks.find((b) => b.name === factor.block(spec)!.name)! }));
  for (let n = 0; n < batch.n; n++) {
    const k = labels[n];
    const y = batch.y[n];
    stats[layout.count + k] += 1;
    for (let i = 0; i < D; i++) {
      const xi = batch.x[n * D + i];
      stats[layout.sx + k * D + i] += xi;
      for (let j = 0; j < D; j++) stats[layout.sxx + k * D * D + i * D + j] += xi * batch.x[n * D + j];
    }
    family.hardWeights(y, batch.offset?.[n] ?? 0, weights);
    const [uuWeight, yWeight] = weights;
    for (let i = 0; i < P; i++) {
      const ui = batch.u[n * P + i];
      stats[layout.syu + k * P + i] += yWeight * ui;
      for (let j = 0; j < P; j++) stats[layout.suu + k * P * P + i * P + j] += uuWeight * ui * batch.u[n * P + j];
    }
    extra?.(1, y, stats, layout.syy + k * family.extraWidth(spec), batch.u.subarray(n * P, (n + 1) * P), null, k);
    for (const { factor, block } of factors) factor.accumulate(spec, batch.categories!, n * J, 1, stats, block.offset + k * block.width);
  }
  return stats;
}

/**
 * Seeds of restart r: a ladder 2, 4, 8, … up to T (all T when T ≤ 2). Merge and delete moves
 * remove what is too many; nothing adds components, so the ladder's top reaches T.
 */
export function initialClusters(T: number, restart: number): number {
  return Math.min(T, 2 ** (restart + 1));
}

/** How a candidate is seeded: the features of k-means++, or regression lines, or a random partition. */
export type Seeding = 'kmeans' | 'kmeans-x' | 'lines' | 'random';

/** The seedings of every restart: k-means on x alone only with the covariate model (D ≥ 1). */
export function seedings(spec: ModelSpec): Seeding[] {
  return (spec.covariateModel && spec.D > 0) || (spec.levels?.length ?? 0) > 0 ? ['kmeans', 'kmeans-x', 'lines', 'random'] : ['kmeans', 'lines', 'lines', 'random'];
}

/** Ridge least squares θ = (UᵀU + εI)⁻¹ Uᵀy over the rows `rows`, shape (P). */
function leastSquares(batch: Batch, P: number, rows: ArrayLike<number>, count: number): Float64Array {
  const a = new Float64Array(P * P);
  const b = new Float64Array(P);
  for (let t = 0; t < count; t++) {
    const n = rows[t];
    for (let i = 0; i < P; i++) {
      const ui = batch.u[n * P + i];
      b[i] += ui * batch.y[n];
      for (let j = 0; j < P; j++) a[i * P + j] += ui * batch.u[n * P + j];
    }
  }
  for (let i = 0; i < P; i++) a[i * P + i] += 1e-3; // ridge: a subset may not span u (standardized scale)
  const l = cholesky(a, P, 'the Gram matrix of a regression seed');
  return backSubstitute(l, P, forwardSubstitute(l, P, b));
}

/**
 * Regression seeds ("k-lines", the regression analogue of Lloyd's algorithm): k lines, each
 * fitted by least squares to P + 1 random rows; then, `lloyd` times, every row goes to the line
 * with the smallest squared residual and every line is refitted to its rows (a line left with
 * fewer than P rows is re-drawn from random rows). Returns the labels.
 */
export function regressionSeeds(spec: ModelSpec, batch: Batch, k: number, random: Random, lloyd: number): Int32Array {
  const { P } = spec;
  const n = batch.n;
  const size = Math.min(n, P + 1);
  const theta = new Float64Array(k * P);
  const draw = (c: number) => {
    const rows = Array.from({ length: size }, () => random.int(n));
    theta.set(leastSquares(batch, P, rows, size), c * P);
  };
  for (let c = 0; c < k; c++) draw(c);
  const labels = new Int32Array(n);
  const order = new Int32Array(n);
  const counts = new Int32Array(k);
  for (let it = 0; it <= lloyd; it++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestResidual = Infinity;
      for (let c = 0; c < k; c++) {
        let fit = 0;
        for (let j = 0; j < P; j++) fit += theta[c * P + j] * batch.u[i * P + j];
        const residual = (batch.y[i] - fit) ** 2;
        if (residual < bestResidual) [bestResidual, best] = [residual, c];
      }
      if (labels[i] !== best) changed = true;
      labels[i] = best;
    }
    if (it === lloyd || (it > 0 && !changed)) break;
    // Rows grouped by label (counting sort), then one refit per line.
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[labels[i]]++;
    const starts = new Int32Array(k);
    for (let c = 1; c < k; c++) starts[c] = starts[c - 1] + counts[c - 1];
    const fill = starts.slice();
    for (let i = 0; i < n; i++) order[fill[labels[i]]++] = i;
    for (let c = 0; c < k; c++) {
      if (counts[c] < P) draw(c);
      else theta.set(leastSquares(batch, P, order.subarray(starts[c], starts[c] + counts[c]), counts[c]), c * P);
    }
  }
  return labels;
}

/** Hard labels of one candidate. */
function seedLabels(spec: ModelSpec, batch: Batch, seeding: Seeding, k: number, random: Random, lloyd: number): Int32Array {
  if (seeding === 'lines') return regressionSeeds(spec, batch, k, random, lloyd);
  if (seeding === 'random') return Int32Array.from({ length: batch.n }, () => random.int(k));
  const { f, dims } = kmeansFeatures(spec, batch, seeding === 'kmeans-x');
  return bestKmeans(f, batch.n, dims, k, random, lloyd, 1);
}

/** The random stream of the screening subsample: past every candidate's (restarts ≤ 20, 4 seedings each). */
const SUBSAMPLE_STREAM = 100;

/**
 * About m rows spread over the whole sample (whose rows come in file windows): one row drawn at
 * random from each run of ⌈n/m⌉ consecutive rows. A fixed stride would alias with data whose rows
 * cycle through groups: every 4th row of a file that lists 4 clusters in turn is one cluster.
 */
export function stratifiedSubsample(batch: Batch, m: number, random: Random): Batch {
  if (batch.n <= m) return batch;
  const stride = Math.ceil(batch.n / m);
  const n = Math.ceil(batch.n / stride);
  const rows = Array.from({ length: n }, (_, i) => i * stride + random.int(Math.min(stride, batch.n - i * stride)));
  return rowsOf(batch, rows);
}

/** Run on one in-memory batch prepared by the kernel, freed afterwards. */
function fitOn<P, R>(kernel: Kernel<P>, batch: Batch, run: (prepared: { n: number; data: P }[]) => R): R {
  const prepared = [{ n: batch.n, data: kernel.prepare(batch) }];
  try {
    return run(prepared);
  } finally {
    kernel.release(prepared[0].data);
  }
}

/** Merge and delete moves (moves.ts) as batchVb's proposer. */
export function moveProposer(spec: ModelSpec): Proposer {
  return (sweep, rejected) => proposeMoves(spec, sweep, { exclude: rejected });
}

/**
 * The screen and the finalists run on a stratified subsample of at most `scoreRows` rows; the winner
 * is refined on the whole sample. Its sample ELBO is what the run reports.
 */
export function initialize<P>(spec: ModelSpec, sample: Batch, kernel: Kernel<P>, options: InitOptions): InitResult {
  const scoring = stratifiedSubsample(sample, options.scoreRows ?? 2000, createRandom(options.seed, SUBSAMPLE_STREAM));
  const kinds = seedings(spec);
  const lloyd = options.lloydIterations ?? 10;
  const refineIterations = options.refineIterations ?? (sample.n <= 10_000 ? 200 : 10);
  const tolerance = options.tolerance ?? 1e-7;
  const prior: GlobalState = { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) };
  const vb = { propose: moveProposer(spec), accept: acceptMove };
  let best: { state: GlobalState; elbo: number; seeding: string; moves: string[]; converged: boolean } | undefined;
  const restartElbos: number[] = [];
  fitOn(kernel, scoring, (prepared) => {
    for (let r = 0; r < options.restarts; r++) {
      // Screen: every seeding of this restart, a few iterations each.
      const k = Math.min(initialClusters(spec.T, r), scoring.n);
      let screened: { state: GlobalState; elbo: number; seeding: string } | undefined;
      kinds.forEach((kind, i) => {
        // A random partition into many parts starts every component alike: slow to break the symmetry.
        if (kind === 'random' && k > 4) return;
        const labels = seedLabels(spec, scoring, kind, k, createRandom(options.seed, r * kinds.length + i), lloyd);
        const start = sortBySize(spec, batchUpdate(spec, prior, hardAssignmentStats(spec, scoring, labels)));
        const fit = batchVb(spec, start, kernel, prepared, { maxIterations: options.iterations ?? 4, tolerance: 1e-5 });
        if (!screened || fit.elbo > screened.elbo) screened = { state: fit.state, elbo: fit.elbo, seeding: `${kind} k0=${k}` };
      });
      // The restart's best, to convergence with moves.
      const final = batchVb(spec, screened!.state, kernel, prepared, {
        maxIterations: scoring === sample ? refineIterations : 50,
        tolerance: scoring === sample ? tolerance : 1e-5,
        ...vb,
      });
      restartElbos.push(final.elbo);
      options.onRestart?.(r + 1);
      if (!best || final.elbo > best.elbo)
        best = { state: final.state, elbo: final.elbo, seeding: screened!.seeding, moves: final.accepted, converged: final.converged };
    }
  });
  if (scoring === sample) return { ...best!, restartElbos };
  // λ of the subsample scaled to the sample, then refined there (with moves).
  const scaled = scaleToRows(spec, best!.state, scoring.n, sample.n);
  const refined = fitOn(kernel, sample, (prepared) =>
    batchVb(spec, scaled, kernel, prepared, { maxIterations: refineIterations, tolerance, ...vb }),
  );
  return {
    state: refined.state,
    elbo: refined.elbo,
    restartElbos,
    seeding: best!.seeding,
    moves: [...best!.moves, ...refined.accepted],
    converged: refined.converged,
  };
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
