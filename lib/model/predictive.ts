/**
 * The predictive distribution of y for one row as a finite mixture: its quantiles and its log
 * density (docs/model.md §10). These functions take the per-component parameters of the row
 * (mixing weight w_k = p(z=k | x), Student-t location μ_k, scale s_k and degrees of freedom ν_k,
 * or for a 0/1 target P(y=1 | z=k)) and know nothing of how they were derived, so they serve any
 * family whose component predictive is one of these.
 *
 * Gaussian response: with q(θ_k, τ_k) = N(θ_k | θ̂_k, (τ_k Λ_k)⁻¹) Gamma(τ_k | a_k, b_k), the
 * predictive of one component is the Bayesian linear regression predictive (PRML 3.58–3.59) with
 * the noise precision integrated out over its Gamma, a Student-t (PRML 2.159; the Normal-Gamma
 * case of PRML exercises 3.12–3.13):
 *
 *   p(y | u, z=k) = St(y | μ_k, s_k⁻², ν_k),  μ_k = θ̂_kᵀu,  s_k² = (b_k/a_k)(1 + uᵀΛ_k⁻¹u),  ν_k = 2a_k,
 *
 * and the row's predictive is Σ_k w_k St(y | μ_k, s_k⁻², ν_k).
 */
import { createRequire } from 'node:module';
import { lnGamma } from '../math/special.js';

// stdlib's Student-t CDF and quantile (regularized incomplete beta, Boost's method) load ~70 small
// modules: only an interval needs them, so they are required on first use, not at every start.
const require = createRequire(import.meta.url);
let tCdfImpl: ((t: number, dof: number) => number) | undefined;
let tQuantileImpl: ((p: number, dof: number) => number) | undefined;
const tCdf = (t: number, dof: number) => (tCdfImpl ??= require('@stdlib/stats-base-dists-t-cdf') as (t: number, dof: number) => number)(t, dof);
const tQuantile = (p: number, dof: number) => (tQuantileImpl ??= require('@stdlib/stats-base-dists-t-quantile') as (p: number, dof: number) => number)(p, dof);

/**
 * Mixture weights below this are left out of a quantile: the CDF they could move is below 1e−12
 * per component, far below any interval's resolution, and leaving them out lets the usual row
 * (one component holds all but ~1e−30 of the weight) take the closed form.
 */
export const NEGLIGIBLE_WEIGHT = 1e-12;
const LN_NEGLIGIBLE_WEIGHT = Math.log(NEGLIGIBLE_WEIGHT);

/** ln of the Student-t normalizer, ln Γ((ν+1)/2) − ln Γ(ν/2) − ½ ln(νπ) (PRML 2.159 with λ = 1). */
export function studentTLogNormalizer(dof: number): number {
  return lnGamma((dof + 1) / 2) - lnGamma(dof / 2) - 0.5 * Math.log(dof * Math.PI);
}

/** The standard Student-t quantile t_ν⁻¹(p): location 0, scale 1. */
export function studentTQuantile(p: number, dof: number): number {
  return tQuantile(p, dof);
}

/**
 * ln St(y | μ, s⁻², ν) = c − ln s − (ν+1)/2 · ln(1 + ((y − μ)/s)²/ν), with c from
 * studentTLogNormalizer(ν) (passed in: ln Γ is too slow to evaluate per row).
 */
export function studentTLogDensity(y: number, loc: number, scale: number, dof: number, logNormalizer: number): number {
  const z = (y - loc) / scale;
  return logNormalizer - Math.log(scale) - ((dof + 1) / 2) * Math.log1p((z * z) / dof);
}

/** The components of one row's predictive, the first `count` entries of each array. */
export interface StudentTMixture {
  count: number;
  /** ln w_k (−∞ for a component with no weight); the w_k sum to 1 over the count entries. */
  logWeight: ArrayLike<number>;
  loc: ArrayLike<number>;
  scale: ArrayLike<number>;
  dof: ArrayLike<number>;
  /** studentTLogNormalizer(dof_k). */
  logNormalizer: ArrayLike<number>;
  /**
   * A lower bound on ln s_k that holds for every row (optional): then a component whose density
   * at its mode, times its weight, is below 1e−18 of a term already computed is left out of the
   * log density without evaluating it (it moves ln p(y) by less than 1e−18).
   */
  logScaleFloor?: ArrayLike<number>;
}

/** ln 1e18: terms this far below one present are left out of a sum of exponentials (they cannot move it). */
const FAR_LOG = 41.5;

/**
 * ln Σ_k exp(terms[k]) over the first `count` terms, with the largest factored out; `into[k]`
 * (when given) receives exp(terms[k]) / Σ, the normalized weights. Shapes: (count).
 */
export function logSumExp(terms: Float64Array, count: number, into?: Float64Array): number {
  let max = -Infinity;
  for (let k = 0; k < count; k++) if (terms[k] > max) max = terms[k];
  if (max === -Infinity) {
    into?.fill(0, 0, count);
    return -Infinity;
  }
  let sum = 0;
  for (let k = 0; k < count; k++) {
    const e = terms[k] === -Infinity ? 0 : Math.exp(terms[k] - max);
    if (into) into[k] = e;
    sum += e;
  }
  if (into) for (let k = 0; k < count; k++) into[k] /= sum;
  return max + Math.log(sum);
}

/**
 * ln p(y) = ln Σ_k w_k St(y | μ_k, s_k⁻², ν_k) of the mixture; `into[k]` (when given) receives
 * p(z=k | y) ∝ w_k St(y | μ_k, s_k⁻², ν_k) (Bayes' rule). `terms` is scratch of length ≥ count.
 */
export function mixtureLogDensity(y: number, m: StudentTMixture, terms: Float64Array, into?: Float64Array): number {
  const { count, logWeight, logScaleFloor } = m;
  // The heaviest component's term first: the largest term is at least that, so a component whose
  // bound lies FAR_LOG below it cannot matter.
  let top = 0;
  for (let k = 1; k < count; k++) if (logWeight[k] > logWeight[top]) top = k;
  const first = logWeight[top] + studentTLogDensity(y, m.loc[top], m.scale[top], m.dof[top], m.logNormalizer[top]);
  const cut = logScaleFloor ? first - FAR_LOG : -Infinity;
  for (let k = 0; k < count; k++) {
    if (k === top) terms[k] = first;
    else if (logWeight[k] === -Infinity || (logScaleFloor && logWeight[k] + m.logNormalizer[k] - logScaleFloor[k] < cut)) terms[k] = -Infinity;
    else terms[k] = logWeight[k] + studentTLogDensity(y, m.loc[k], m.scale[k], m.dof[k], m.logNormalizer[k]);
  }
  return logSumExp(terms, count, into);
}

/**
 * The p-quantile of the mixture: the y with F(y) = Σ_k w_k T_ν_k((y − μ_k)/s_k) = p. `unit[k]` is
 * t_ν_k⁻¹(p) (studentTQuantile, computed once per component and p). Each component's own
 * quantile μ_k + s_k·unit[k] has F_k = p, so F ≤ p at the smallest of them and F ≥ p at the
 * largest: the root lies between, and is that quantile itself when one component carries the
 * weight. Otherwise Newton's method on F, kept inside the bracket (a step leaving it bisects),
 * until a step or the bracket is below 1e−12 of the bracket's scale or F is within 1e−14 of p.
 */
export function mixtureQuantile(p: number, m: StudentTMixture, unit: ArrayLike<number>): number {
  let lo = Infinity;
  let hi = -Infinity;
  let used = 0;
  let heaviest = -1;
  for (let k = 0; k < m.count; k++) {
    if (!(m.logWeight[k] >= LN_NEGLIGIBLE_WEIGHT)) continue;
    const q = m.loc[k] + m.scale[k] * unit[k];
    if (q < lo) lo = q;
    if (q > hi) hi = q;
    if (heaviest < 0 || m.logWeight[k] > m.logWeight[heaviest]) heaviest = k;
    used++;
  }
  if (used === 0) return NaN;
  if (used === 1 || !(hi > lo)) return lo;
  let total = 0;
  for (let k = 0; k < m.count; k++) if (m.logWeight[k] >= LN_NEGLIGIBLE_WEIGHT) total += Math.exp(m.logWeight[k]);
  // Converged when the bracket or a step is below 1e−12 of the scale of the answer.
  const tolerance = 1e-12 * Math.max(Math.abs(lo), Math.abs(hi), hi - lo);
  // Start at the heaviest component's own quantile: with the usual weights (one near 1, the others
  // small) the root is close to it and Newton needs a step or two; the bracket's midpoint would
  // leave it to bisection.
  let y = m.loc[heaviest] + m.scale[heaviest] * unit[heaviest];
  for (let iteration = 0; iteration < 200; iteration++) {
    let cdf = 0;
    let density = 0;
    for (let k = 0; k < m.count; k++) {
      if (!(m.logWeight[k] >= LN_NEGLIGIBLE_WEIGHT)) continue;
      const w = Math.exp(m.logWeight[k]);
      cdf += w * tCdf((y - m.loc[k]) / m.scale[k], m.dof[k]);
      density += w * Math.exp(studentTLogDensity(y, m.loc[k], m.scale[k], m.dof[k], m.logNormalizer[k]));
    }
    const error = cdf / total - p;
    if (Math.abs(error) <= 1e-14) return y;
    if (error < 0) lo = y;
    else hi = y;
    let next = y - (error * total) / density;
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (Math.abs(next - y) <= tolerance || hi - lo <= tolerance) return next;
    y = next;
  }
  return y;
}
