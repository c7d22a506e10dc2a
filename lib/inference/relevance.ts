/**
 * Covariate relevance: which clustering covariates carry cluster information (docs/model.md §13).
 *
 * With many covariates the covariate model's likelihood decides the partition (Wade et al. 2014):
 * covariates with no cluster information make every extra component pay for a full mean and
 * covariance, so the ELBO prefers one cluster even when the regressions differ. Here each
 * covariate is either *relevant*, modelled per component as before, or *irrelevant*, modelled by
 * one shared background Gaussian (the feature saliency of Law, Figueiredo & Jain 2004, decided per
 * covariate by evidence; blocks with full covariances, and the background conditional on the
 * relevant block as in Raftery & Dean 2006):
 *
 *   p(x_n | z_n = k) = N(x_nR | μ_k, Λ_k⁻¹) · p(x_nI | x_nR),   p(x_I | x_R) shared by all components.
 *
 * The background does not depend on k, so it cancels from the responsibilities: a fit with
 * relevant set R is the fit of the model on x_R alone (the irrelevant covariates stay regression
 * columns if they were). With p(X_I | X_R) = Z(X; 1) / Z(X_R; 1), one Gaussian over all covariates,
 * the whole model's ELBO is the fit's ELBO − ln Z(X_R; 1) + ln Z(X; 1), the last term the same for
 * every R. Here ln Z(X; w) is the Normal–Wishart log evidence of rows weighted by w with the model's
 * prior for that many covariates; with w = r_·k it is the optimal global term of the bound for a
 * fixed q(z) (∫ p(μ, Λ) Π_n N(x_n | μ, Λ⁻¹)^{r_nk} dμ dΛ).
 *
 * **Decision.** For a fit's responsibilities r, the clustering's gain on a covariate set R is
 * `G(R) = Σ_k ln Z(X_R; r_·k) − ln Z(X_R; 1)`: the log Bayes factor of "R modelled per component"
 * against "R from one shared Gaussian", 0 for R = ∅ or a single component. Covariate j's log Bayes
 * factor, relevant against background with everything else as fitted, is
 * `ln B_j = G(R ∪ {j}) − G(R ∖ {j})`, and its relevance probability `B_j / (1 + B_j)` (prior odds
 * 1). The set is chosen stepwise (Raftery & Dean 2006, by evidence instead of BIC): fit with R = every
 * covariate; R' = {j : ln B_j > 0}; refit with R' (where R' was fitted already, with a forward step
 * instead: forwardStep) until no new set is left or after MAX_SELECTION_FITS fits; keep the fit with
 * the highest whole-model sample ELBO (fit ELBO − ln Z(X_R; 1)), the first on a tie (within
 * MOVE_MARGIN). Data whose covariates all carry cluster information costs one local step beyond the
 * initialization.
 */
import type { Priors } from '../config.js';
import type { ColumnPlan, Standardization } from '../data/dataset.js';
import type { Batch, Kernel } from '../kernel/types.js';
import { cholesky, logDetFromCholesky } from '../math/linalg.js';
import { lnMultiGamma } from '../math/special.js';
import type { ModelSpec } from '../model/spec.js';
import { initialize, type InitOptions, type InitResult } from './init.js';
import { acceptMove } from './moves.js';
import { paramsFor, PRUNE_BELOW_ROWS, runLocalStep } from './vb.js';

/** Fits of the sample at most, the first with every covariate relevant. */
export const MAX_SELECTION_FITS = 4;

export interface CovariateRelevance {
  column: string;
  /** Whether the fit models it per component (it is in the relevant set R). */
  relevant: boolean;
  /** ln B_j = G(R ∪ {j}) − G(R ∖ {j}) for the chosen fit's responsibilities (module header). */
  logBayesFactor: number;
  /** B_j / (1 + B_j): the posterior probability that covariate j is relevant, prior odds 1. */
  probability: number;
}

/**
 * Weighted moments of v_n = [x_n; 1] (shape (D+1)×(D+1), row-major), one matrix per component
 * with weights r_·k and one with weight 1: Σ_n w_n x_n x_nᵀ, Σ_n w_n x_n and Σ_n w_n in one block.
 */
export function weightedMoments(x: Float64Array, n: number, D: number, r: Float64Array | null, T: number): { perComponent: Float64Array[]; all: Float64Array } {
  const V = D + 1;
  const accumulate = (weight: (row: number) => number) => {
    const m = new Float64Array(V * V);
    for (let row = 0; row < n; row++) {
      // Rows another component explains (r below 1e-12) add nothing visible: skipping them makes the
      // cost about n·D²/2 in all rather than per component.
      const w = weight(row);
      if (w < 1e-12) continue;
      const xr = x.subarray(row * D, (row + 1) * D);
      for (let i = 0; i < D; i++) {
        const wi = w * xr[i];
        for (let j = i; j < D; j++) m[i * V + j] += wi * xr[j];
        m[i * V + D] += wi;
      }
      m[D * V + D] += w;
    }
    for (let i = 0; i < V; i++) for (let j = 0; j < i; j++) m[i * V + j] = m[j * V + i];
    return m;
  };
  const perComponent: Float64Array[] = [];
  if (r)
    for (let k = 0; k < T; k++) {
      let total = 0;
      for (let row = 0; row < n; row++) total += r[row * T + k];
      if (total >= PRUNE_BELOW_ROWS) perComponent.push(accumulate((row) => r[row * T + k]));
    }
  return { perComponent, all: accumulate(() => 1) };
}

/** A Normal–Wishart prior NW(m0 = 0, β0, W0, ν0) on a block of covariates, with W0⁻¹ = scale · I. */
interface BlockPrior {
  beta0: number;
  nu0: number;
  scale: number;
}

/** The model's prior on a block of d covariates (docs/model.md §2): ν0 = d + extra, W0⁻¹ = ν0 s I. */
function blockPrior(priors: Priors, d: number): BlockPrior {
  const nu0 = d + priors.extraDegreesOfFreedom;
  return { beta0: priors.meanPrecision, nu0, scale: nu0 * priors.clusterVariance };
}

/**
 * ln Z: the Normal–Wishart log evidence of covariates `columns` (indices into x) given weighted
 * moments m (from weightedMoments) and a prior with m0 = 0:
 *
 *   ln Z = −(N d/2) ln π + ln Γ_d(ν_N/2) − ln Γ_d(ν0/2) + (ν0/2) ln|W0⁻¹| − (ν_N/2) ln|W_N⁻¹| + (d/2) ln(β0/β_N)
 *
 * (Murphy 2007, "Conjugate Bayesian analysis of the Gaussian distribution", eq. 266; PRML 10.60–10.63
 * for the update) with N = Σ w, β_N = β0 + N, ν_N = ν0 + N, W_N⁻¹ = W0⁻¹ + Σ w x xᵀ − (Σ w x)(Σ w x)ᵀ / β_N.
 * Zero for no columns or no weight.
 */
export function logEvidence(prior: BlockPrior, m: Float64Array, D: number, columns: number[]): number {
  const d = columns.length;
  const V = D + 1;
  const N = m[D * V + D];
  if (d === 0 || N <= 0) return 0;
  const { beta0, nu0 } = prior;
  const betaN = beta0 + N;
  const nuN = nu0 + N;
  const scatter = new Float64Array(d * d);
  columns.forEach((a, i) =>
    columns.forEach((b, j) => {
      scatter[i * d + j] = m[a * V + b] - (m[a * V + D] * m[b * V + D]) / betaN + (i === j ? prior.scale : 0);
    }),
  );
  const lnDetN = logDetFromCholesky(cholesky(scatter, d, 'covariate scatter'), d);
  return (
    -(N * d / 2) * Math.log(Math.PI) + lnMultiGamma(nuN / 2, d) - lnMultiGamma(nu0 / 2, d) +
    (nu0 / 2) * d * Math.log(prior.scale) - (nuN / 2) * lnDetN + (d / 2) * Math.log(beta0 / betaN)
  );
}

/**
 * G(R): the log Bayes factor of covariates R modelled per component (weights r_·k) against one
 * shared Gaussian, Σ_k ln Z(X_R; r_·k) − ln Z(X_R; 1), both with the block's prior (module header).
 * Zero for R empty or a single component.
 */
export function clusteringGain(priors: Priors, moments: ReturnType<typeof weightedMoments>, D: number, relevant: number[]): number {
  const block = blockPrior(priors, relevant.length);
  let g = -logEvidence(block, moments.all, D, relevant);
  for (const m of moments.perComponent) g += logEvidence(block, m, D, relevant);
  return g;
}

/** ln B_j for every covariate j, given the moments of a fit with relevant set `relevant`. */
export function logBayesFactors(priors: Priors, moments: ReturnType<typeof weightedMoments>, D: number, relevant: number[]): number[] {
  return Array.from({ length: D }, (_, j) => {
    const without = relevant.filter((i) => i !== j);
    const withJ = [...without, j].sort((a, b) => a - b);
    return clusteringGain(priors, moments, D, withJ) - clusteringGain(priors, moments, D, without);
  });
}

/** The batch with only covariates `columns` of x (shape (n, |columns|)). */
export function selectCovariates(batch: Batch, D: number, columns: number[]): Batch {
  const x = new Float64Array(batch.n * columns.length);
  for (let row = 0; row < batch.n; row++) columns.forEach((c, i) => (x[row * columns.length + i] = batch.x[row * D + c]));
  return { ...batch, x };
}

export interface SelectionResult {
  /** Indices (into the candidate covariates) of the relevant set the run uses. */
  relevant: number[];
  /** The spec with D = |relevant| (conditional-only when empty). */
  spec: ModelSpec;
  init: InitResult;
  /** Per candidate covariate: ln B_j and its probability for the chosen fit. */
  logBayesFactors: number[];
  /** Each fit made: its relevant set and whole-model sample ELBO up to a constant, ELBO − ln Z(X_R; 1). */
  fits: { relevant: number[]; elbo: number }[];
}

/**
 * Choose the relevant covariates on the planner's sample (module header) and initialize the model
 * on them. `spec` has every candidate covariate (D of them); the sample's x holds them all.
 */
export function initializeWithRelevance<P>(
  spec: ModelSpec,
  sample: Batch,
  kernel: Kernel<P>,
  options: InitOptions & { /** Called before each fit (1-based) with its number of relevant covariates. */ onFit?: (fit: number, covariates: number) => void },
): SelectionResult {
  const D = spec.D;
  const all = Array.from({ length: D }, (_, j) => j);
  let relevant = all;
  const fits: SelectionResult['fits'] = [];
  let best: (Omit<SelectionResult, 'fits'> & { elbo: number }) | undefined;
  while (fits.length < MAX_SELECTION_FITS && !fitted(fits, relevant)) {
    const reduced: ModelSpec = { ...spec, D: relevant.length, covariateModel: relevant.length > 0 };
    const batch = selectCovariates(sample, D, relevant);
    options.onFit?.(fits.length + 1, relevant.length);
    const init = initialize(reduced, batch, kernel, options);
    const prepared = kernel.prepare(batch);
    let r: Float64Array;
    try {
      r = runLocalStep(kernel, paramsFor(reduced, init.state), prepared, { responsibilities: true }).responsibilities!;
    } finally {
      kernel.release(prepared);
    }
    const moments = weightedMoments(sample.x, sample.n, D, r, spec.T);
    const factors = logBayesFactors(spec.priors, moments, D, relevant);
    // The whole model's sample ELBO up to ln Z(X; 1), the same for every R: the fit's ELBO plus the
    // background's ln p(X_I | X_R) = ln Z(X; 1) − ln Z(X_R; 1).
    const elbo = init.elbo - logEvidence(blockPrior(spec.priors, relevant.length), moments.all, D, relevant);
    fits.push({ relevant, elbo });
    // A later set must beat the kept one by more than float rounding (MOVE_MARGIN): on data with one
    // cluster every set gives the same model up to rounding, and the first (every covariate) stays.
    if (!best || acceptMove(best.elbo, elbo)) best = { relevant, spec: reduced, init, logBayesFactors: factors, elbo };
    relevant = factors.flatMap((b, j) => (b > 0 ? [j] : []));
    if (fitted(fits, relevant)) relevant = forwardStep(best, fits);
  }
  const { elbo: _elbo, ...chosen } = best!;
  return { ...chosen, fits };
}

/**
 * When the sets repeat: the best fit's set with the excluded covariate of the largest ln B_j added,
 * one forward step of Raftery & Dean's stepwise search judged by a refit, not by ln B_j at the best
 * fit's responsibilities. Those are a clustering that did not see the covariate: a weak cluster
 * signal in it shows only once the clusters are fitted with it. The refit is kept only if its
 * whole-model ELBO is higher. Returns a set already tried (ending the search) when there is none.
 */
function forwardStep(best: { relevant: number[]; logBayesFactors: number[] }, fits: SelectionResult['fits']): number[] {
  let add = -1;
  best.logBayesFactors.forEach((b, j) => {
    if (!best.relevant.includes(j) && (add < 0 || b > best.logBayesFactors[add])) add = j;
  });
  const next = add < 0 ? best.relevant : [...best.relevant, add].sort((a, b) => a - b);
  return fitted(fits, next) ? best.relevant : next;
}

/** Whether a fit with exactly these relevant covariates was made. */
const fitted = (fits: SelectionResult['fits'], relevant: number[]) => fits.some((f) => f.relevant.join() === relevant.join());

/** Relevance of each candidate column for posterior.json and the report. */
export function relevanceOf(columns: string[], selection: Pick<SelectionResult, 'relevant' | 'logBayesFactors'>): CovariateRelevance[] {
  return columns.map((column, j) => {
    const b = selection.logBayesFactors[j];
    return { column, relevant: selection.relevant.includes(j), logBayesFactor: b, probability: 1 / (1 + Math.exp(-b)) };
  });
}

/**
 * The column plan and standardization of a run that clusters on the relevant covariates only:
 * x and its slots and standardization narrowed to them, every row still parsed as before (the
 * irrelevant columns stay regression columns when they were), and every candidate's relevance kept.
 */
export function narrowToRelevant(plan: ColumnPlan, standardization: Standardization, relevant: number[], relevance: CovariateRelevance[]) {
  // A dropped covariate that is also a regression input is no longer integrated out where missing
  // (docs/model.md §18): such rows are skipped, as for any missing regression-only input.
  const dropped = new Set(plan.x.filter((_, j) => !relevant.includes(j)));
  const select = plan.select.map(({ marginal, ...column }) => (marginal && !(dropped.has(column.column) && plan.r.includes(column.column)) ? { ...column, marginal } : column));
  return {
    plan: { ...plan, select, x: relevant.map((j) => plan.x[j]), xSlot: relevant.map((j) => plan.xSlot[j]), relevance },
    standardization: { ...standardization, xMean: relevant.map((j) => standardization.xMean[j]), xSd: relevant.map((j) => standardization.xSd[j]) },
  };
}
