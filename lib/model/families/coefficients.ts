/**
 * What every response family shares: a Gaussian posterior over each component's P coefficients,
 * q(θ_k) = N(θ_k, Λ_k⁻¹) (times the noise scale for gaussian), kept in natural coordinates as
 * Λ_k (block suu) and h_k = Λ_k θ_k (block syu), with the prior θ_k ~ N(0, Λ0⁻¹), Λ0 diagonal
 * (spec.ts coefficientPriorPrecision; PRML 10.3, 10.6).
 */
import { cholesky, inverseFromCholesky, logDetFromCholesky, matVec, quadraticForm, symmetrize, traceOfProduct } from '../../math/linalg.js';
import type { Derived, LocalParams } from '../posterior.js';
import type { Layout, ModelSpec } from '../spec.js';

/** θ_k = Λ_k⁻¹ h_k (T, P), Λ_k⁻¹ (T, P, P) and ln|Λ_k| (T) from λ. */
export function deriveCoefficients(spec: ModelSpec, lambda: Float64Array, layout: Layout) {
  const { T, P } = spec;
  const coef = new Float64Array(T * P);
  const coefCovariance = new Float64Array(T * P * P);
  const lnDetCoefPrecision = new Float64Array(T);
  for (let k = 0; k < T; k++) {
    const precision = lambda.slice(layout.suu + k * P * P, layout.suu + (k + 1) * P * P);
    symmetrize(precision, P);
    const chol = cholesky(precision, P, `the coefficient precision Λ of component ${k + 1}`);
    const covariance = inverseFromCholesky(chol, P);
    coefCovariance.set(covariance, k * P * P);
    lnDetCoefPrecision[k] = logDetFromCholesky(chol, P);
    const h = lambda.subarray(layout.syu + k * P, layout.syu + (k + 1) * P);
    coef.set(matVec(covariance, P, h), k * P);
  }
  return { coef, coefCovariance, lnDetCoefPrecision };
}

/**
 * E_q(τ)[KL(N(θ_k, (τ Λ_k)⁻¹) ‖ N(0, (τ Λ0)⁻¹))] with E[τ] = `eTau` (1 when θ has no noise scale):
 * ½ (tr(Λ0 Λ_k⁻¹) − P + E[τ] θ_kᵀ Λ0 θ_k + ln|Λ_k| − ln|Λ0|). λ0 gives Λ0.
 */
export function coefficientKl(d: Derived, lambda0: Float64Array, k: number, eTau: number): number {
  const { P } = d.spec;
  const layout = d.layout;
  const prec0 = lambda0.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P);
  const lnDetPrec0 = logDetFromCholesky(cholesky(prec0, P), P);
  const cov = d.coefCovariance.subarray(k * P * P, (k + 1) * P * P);
  const theta = d.coef.subarray(k * P, (k + 1) * P); // θ0 = 0
  return 0.5 * (traceOfProduct(prec0, cov, P) - P + eTau * quadraticForm(prec0, P, theta) + d.lnDetCoefPrecision[k] - lnDetPrec0);
}

/** Σ_k of coefficientKl with no noise scale (E[τ] = 1), added to `total`: a family whose only global factor is q(θ). */
export function addCoefficientKl(d: Derived, lambda0: Float64Array, total: number): number {
  for (let k = 0; k < d.spec.T; k++) total += coefficientKl(d, lambda0, k, 1);
  return total;
}

/**
 * The fused kernel's columns for a family that needs η = θ_kᵀu and the spread: qu_k = [θ_k; 0], so
 * [u, y] qu_k = η and ‖[u, y] G_k‖² = uᵀΛ_k⁻¹u + η² with G_k = [C_k; 0 | qu_k] (families/family.ts).
 */
export function linearPredictorColumns(local: LocalParams, k: number, qu: Float64Array): { spreadScale: number; constant: number } {
  const { P } = local.spec;
  for (let i = 0; i < P; i++) qu[i] = local.coef[k * P + i];
  qu[P] = 0;
  return { spreadScale: 1, constant: 0 };
}

/** The fused kernel's finish when Σ w_u u is the first P rows of Σ v [u, y]: copied into syu. */
export function copyUSums(_qu: Float32Array, k: number, T: number, P: number, sumE: Float64Array, _sumEE: number, stats: Float64Array, layout: Layout): void {
  for (let i = 0; i < P; i++) stats[layout.syu + k * P + i] = sumE[i * T + k];
}

/**
 * Σ_n r_n (y_n − θᵀu_n)² from the statistics Σ r y², h = Σ r y u, U = Σ r u uᵀ:
 * Σ r y² − 2 θᵀh + θᵀUθ. Shapes: θ, h (P); U (P, P).
 */
export function weightedResidualSquares(theta: ArrayLike<number>, P: number, syy: number, syu: ArrayLike<number>, suu: Float64Array): number {
  let thetaH = 0;
  for (let i = 0; i < P; i++) thetaH += theta[i] * syu[i];
  return syy - 2 * thetaH + quadraticForm(suu, P, theta);
}

/** Component k's blocks of statistics: suu (P, P), syu (P) and the family's own (syy). */
export function componentBlocks(stats: Float64Array, layout: Layout, P: number, extraWidth: number, k: number) {
  return {
    suu: stats.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P),
    syu: stats.subarray(layout.syu + k * P, layout.syu + (k + 1) * P),
    extra: stats.subarray(layout.syy + k * extraWidth, layout.syy + (k + 1) * extraWidth),
  };
}
