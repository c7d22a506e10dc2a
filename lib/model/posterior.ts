/**
 * The global variational posterior: natural coordinates λ (see spec.ts) plus q(α) for the DP
 * concentration, the quantities derived from them, the KL divergence from the prior, and the
 * updates (batch VB and the SVI natural-gradient step).
 *
 * Notation follows Bishop, PRML ch. 10; equation numbers are cited where a quantity is formed.
 */
import { cholesky, inverseFromCholesky, logDetFromCholesky, quadraticForm, symmetrize, traceOfProduct } from '../math/linalg.js';
import { digamma, klGamma, LN_2PI, lnBeta, lnGamma, lnMultiGamma, multiDigamma } from '../math/special.js';
import { covariateFactorsOf } from './covariates/index.js';
import { deriveCoefficients } from './families/coefficients.js';
import { familyOf } from './families/index.js';
import { deriveJointShared, type SharedPosterior } from './families/shared.js';
import {
  dirichletConcentration,
  layoutOf,
  priorCoordinates,
  priorDegreesOfFreedom,
  type Layout,
  type ModelSpec,
} from './spec.js';

/** q(α) = Gamma(shape, rate), present only when the DP concentration has a prior. */
export interface GammaParams {
  shape: number;
  rate: number;
}

/** What the aggregator owns and versions: everything else is derived. */
export interface GlobalState {
  /** λ, natural coordinates in the layout of spec.ts. */
  lambda: Float64Array;
  /** q(α); null when α is fixed or the weights are finite Dirichlet. */
  alpha: GammaParams | null;
}

/** Per-component quantities derived from λ, in float64. All arrays are row-major. */
export interface Derived {
  spec: ModelSpec;
  layout: Layout;
  /** λ it was derived from (the covariate factors derive from their blocks of it). */
  lambda: Float64Array;
  /** N_k, shape (T). */
  count: Float64Array;
  /** E[ln π_k], shape (T) (PRML 10.66 for Dirichlet; Blei & Jordan 2006 for stick-breaking). */
  eLnPi: Float64Array;
  /** E[π_k], shape (T). */
  ePi: Float64Array;
  /** Stick-breaking q(v_k) = Beta(a_k, b_k), shape (T); v_T = 1. Dirichlet: α_k in stickA. */
  stickA: Float64Array;
  stickB: Float64Array;
  /** E[α] used for the sticks. */
  eAlpha: number;
  // Covariate model, q(μ_k, Λ_k) = N(μ_k | m_k, (β_k Λ_k)⁻¹) W(Λ_k | W_k, ν_k) (PRML 10.59–10.63).
  /** β_k, shape (T). */
  beta: Float64Array;
  /** m_k, shape (T, D). */
  mean: Float64Array;
  /** ν_k, shape (T). */
  nu: Float64Array;
  /** W_k⁻¹, shape (T, D, D). */
  wishartInverse: Float64Array;
  /** W_k, shape (T, D, D). */
  wishart: Float64Array;
  /** ln|W_k|, shape (T). */
  lnDetW: Float64Array;
  /** E[ln|Λ_k|] = ψ_D(ν_k/2) + D ln 2 + ln|W_k| (PRML 10.65), shape (T). */
  eLnDetLambda: Float64Array;
  // Response: q(θ_k) = N(θ_k, Λ_k⁻¹) (gaussian: given τ_k, scaled by 1/τ_k), families/coefficients.ts.
  /** θ_k = Λ_k⁻¹ h_k, shape (T, P). */
  coef: Float64Array;
  /** Λ_k⁻¹, shape (T, P, P). */
  coefCovariance: Float64Array;
  /** ln|Λ_k|, shape (T). */
  lnDetCoefPrecision: Float64Array;
  /** The response family's own per-component quantities, shape (T, derivedWidth) (gaussian: a_k, b_k). */
  response: Float64Array;
  /**
   * With shared coefficients (spec.shared): q(β) and the response factor's KL. coef and
   * coefCovariance then hold each component's θ_k = [β; b_k] as the local step needs it
   * (lib/model/families/shared.ts).
   */
  shared?: SharedPosterior;
}

export function initialAlpha(spec: ModelSpec): GammaParams | null {
  const prior = spec.priors.dpConcentrationPrior;
  if (spec.weights !== 'stick-breaking' || !prior) return null;
  return { shape: prior.shape, rate: prior.rate };
}

/** λ = λ0 + S: the batch VB update of every global factor given row statistics S. */
export function batchCoordinates(spec: ModelSpec, stats: Float64Array): Float64Array {
  const lambda = priorCoordinates(spec);
  for (let i = 0; i < lambda.length; i++) lambda[i] += stats[i];
  return lambda;
}

/**
 * The SVI step in natural coordinates (Hoffman et al. 2013, eq. 27):
 * λ ← (1 − ρ) λ + ρ λ̂ with λ̂ = λ0 + scale · S. With ρ = 1 and scale = 1 this is batch VB.
 * A convex combination of valid coordinates is valid, so no projection is needed.
 */
export function naturalGradientStep(
  spec: ModelSpec,
  lambda: Float64Array,
  stats: Float64Array,
  scale: number,
  rho: number,
): Float64Array {
  const lambda0 = priorCoordinates(spec);
  const out = new Float64Array(lambda.length);
  for (let i = 0; i < out.length; i++) out[i] = (1 - rho) * lambda[i] + rho * (lambda0[i] + scale * stats[i]);
  return out;
}

/**
 * q(α) given the sticks: Gamma(s1 + T − 1, s2 − Σ_{k<T} E ln(1 − v_k)) (Blei & Jordan 2006, §4).
 * A coordinate-ascent step: call after λ changes, with the sticks derived from the new λ.
 */
export function updateAlpha(spec: ModelSpec, derived: Derived): GammaParams | null {
  const prior = spec.priors.dpConcentrationPrior;
  if (spec.weights !== 'stick-breaking' || !prior) return null;
  let sumLnOneMinusV = 0;
  for (let k = 0; k < spec.T - 1; k++) {
    const a = derived.stickA[k];
    const b = derived.stickB[k];
    sumLnOneMinusV += digamma(b) - digamma(a + b);
  }
  return { shape: prior.shape + spec.T - 1, rate: prior.rate - sumLnOneMinusV };
}

/** Everything the local step and the reports need, from λ and q(α). */
export function derive(spec: ModelSpec, state: GlobalState): Derived {
  const { T, D, P } = spec;
  const layout = layoutOf(spec);
  const lambda = state.lambda;
  const count = lambda.slice(layout.count, layout.count + T);

  // Mixing weights.
  const eLnPi = new Float64Array(T);
  const ePi = new Float64Array(T);
  const stickA = new Float64Array(T);
  const stickB = new Float64Array(T);
  const eAlpha = state.alpha ? state.alpha.shape / state.alpha.rate : spec.priors.dpConcentration;
  if (spec.weights === 'dirichlet') {
    // q(π) = Dir(α0 + N_k); E ln π_k = ψ(α_k) − ψ(Σ α) (PRML 10.58, 10.66).
    const alpha0 = dirichletConcentration(spec);
    let total = 0;
    for (let k = 0; k < T; k++) total += (stickA[k] = alpha0 + count[k]);
    const psiTotal = digamma(total);
    for (let k = 0; k < T; k++) {
      eLnPi[k] = digamma(stickA[k]) - psiTotal;
      ePi[k] = stickA[k] / total;
    }
  } else {
    // q(v_k) = Beta(1 + N_k, E[α] + Σ_{j>k} N_j), v_T = 1 (Blei & Jordan 2006, eq. 18–19);
    // E ln π_k = E ln v_k + Σ_{j<k} E ln(1 − v_j).
    let tail = 0;
    for (let k = T - 1; k >= 0; k--) {
      stickA[k] = 1 + count[k];
      stickB[k] = eAlpha + tail;
      tail += count[k];
    }
    let lnRest = 0;
    let restMass = 1;
    for (let k = 0; k < T; k++) {
      if (k === T - 1) {
        eLnPi[k] = lnRest;
        ePi[k] = restMass;
        break;
      }
      const psiSum = digamma(stickA[k] + stickB[k]);
      eLnPi[k] = digamma(stickA[k]) - psiSum + lnRest;
      ePi[k] = (restMass * stickA[k]) / (stickA[k] + stickB[k]);
      lnRest += digamma(stickB[k]) - psiSum;
      restMass *= stickB[k] / (stickA[k] + stickB[k]);
    }
  }

  // Covariate model (PRML 10.60–10.63 in natural coordinates).
  const beta = new Float64Array(T);
  const mean = new Float64Array(T * D);
  const nu = new Float64Array(T);
  const wishartInverse = new Float64Array(T * D * D);
  const wishart = new Float64Array(T * D * D);
  const lnDetW = new Float64Array(T);
  const eLnDetLambda = new Float64Array(T);
  if (spec.covariateModel) {
    const nu0 = priorDegreesOfFreedom(spec);
    for (let k = 0; k < T; k++) {
      beta[k] = spec.priors.meanPrecision + count[k];
      nu[k] = nu0 + count[k];
      for (let i = 0; i < D; i++) mean[k * D + i] = lambda[layout.sx + k * D + i] / beta[k];
      const winv = wishartInverse.subarray(k * D * D, (k + 1) * D * D);
      for (let i = 0; i < D; i++)
        for (let j = 0; j < D; j++)
          winv[i * D + j] =
            lambda[layout.sxx + k * D * D + i * D + j] - beta[k] * mean[k * D + i] * mean[k * D + j];
      symmetrize(winv, D);
      const chol = cholesky(winv, D, `the scatter matrix W⁻¹ of component ${k + 1}`);
      wishart.set(inverseFromCholesky(chol, D), k * D * D);
      lnDetW[k] = -logDetFromCholesky(chol, D);
      eLnDetLambda[k] = multiDigamma(nu[k] / 2, D) + D * Math.LN2 + lnDetW[k];
    }
  }

  // Response (PRML 10.3 / 10.6 in natural coordinates); with shared coefficients the tied
  // posterior of lib/model/families/shared.ts, which writes the same per-component quantities.
  const family = familyOf(spec.family);
  const w = family.derivedWidth(spec);
  if (spec.shared?.length) {
    const tied = family.deriveShared?.(spec, lambda, layout, count) ?? deriveJointShared(spec, lambda, layout);
    if (!family.deriveShared) {
      tied.response = new Float64Array(T * w);
      for (let k = 0; k < T; k++)
        family.derive(spec, lambda, layout, k, count[k], tied.coef.subarray(k * P, (k + 1) * P), tied.response.subarray(k * w, (k + 1) * w));
    }
    return {
      spec, layout, lambda, count, eLnPi, ePi, stickA, stickB, eAlpha,
      beta, mean, nu, wishartInverse, wishart, lnDetW, eLnDetLambda,
      coef: tied.coef, coefCovariance: tied.coefCovariance, lnDetCoefPrecision: tied.lnDetCoefPrecision, response: tied.response,
      shared: tied.shared,
    };
  }
  const { coef, coefCovariance, lnDetCoefPrecision } = deriveCoefficients(spec, lambda, layout);
  const response = new Float64Array(T * w);
  for (let k = 0; k < T; k++)
    family.derive(spec, lambda, layout, k, count[k], coef.subarray(k * P, (k + 1) * P), response.subarray(k * w, (k + 1) * w));

  return {
    spec, layout, lambda, count, eLnPi, ePi, stickA, stickB, eAlpha,
    beta, mean, nu, wishartInverse, wishart, lnDetW, eLnDetLambda,
    coef, coefCovariance, lnDetCoefPrecision, response,
  };
}

/**
 * What the per-row local step needs, precomputed once per posterior version.
 *
 * ln ρ_nk = logWeight_k
 *         + covariateConst_k − ½ ‖(x_n − m_k)ᵀ F_k‖²            (F_k F_kᵀ = ν_k W_k; PRML 10.64)
 *         + the response family's term in η = θ_kᵀ u_n and spread = ‖u_nᵀ C_k‖²  (C_k C_kᵀ = Λ_k⁻¹)
 * e.g. responseConst_k − ½ (E[τ_k] (y_n − η)² + spread) for the gaussian response, the
 * Jaakkola–Jordan bound ln σ(ξ) + (y − ½) η − ξ/2 with ξ² = spread + η² for the bernoulli one
 * (PRML 10.152, 10.163); see lib/model/families/.
 */
export interface LocalParams {
  spec: ModelSpec;
  /** N_k, shape (T): which components are worth computing (vb.ts runLocalStep). */
  count: Float64Array;
  /** E ln π_k, shape (T). */
  logWeight: Float64Array;
  /** m_k, shape (T, D). */
  mean: Float64Array;
  /** F_k, lower Cholesky factor of ν_k W_k, shape (T, D, D). */
  precisionFactor: Float64Array;
  /** ½ E ln|Λ_k| − D/2 ln 2π − D / (2 β_k), shape (T). */
  covariateConst: Float64Array;
  /** θ_k, shape (T, P). */
  coef: Float64Array;
  /** C_k, lower Cholesky factor of Λ_k⁻¹, shape (T, P, P). */
  coefCovFactor: Float64Array;
  /** The response family's per-component constants, shape (T, localWidth) (gaussian: E[τ_k], ½ (ψ(a_k) − ln b_k) − ½ ln 2π). */
  response: Float64Array;
  /**
   * Each covariate factor's table (T, width) of its term of ln ρ (lib/model/covariates/), in the
   * order of covariateFactorsOf(spec); empty without categorical covariates.
   */
  factors: Float64Array[];
}

export function localParams(derived: Derived): LocalParams {
  const { spec } = derived;
  const { T, D, P } = spec;
  const precisionFactor = new Float64Array(T * D * D);
  const covariateConst = new Float64Array(T);
  const coefCovFactor = new Float64Array(T * P * P);
  const family = familyOf(spec.family);
  const w = family.localWidth(spec);
  const response = new Float64Array(T * w);
  for (let k = 0; k < T; k++) {
    if (spec.covariateModel) {
      const scaled = derived.wishart.slice(k * D * D, (k + 1) * D * D).map((w) => w * derived.nu[k]);
      precisionFactor.set(cholesky(scaled, D, `ν W of component ${k + 1}`), k * D * D);
      covariateConst[k] = 0.5 * derived.eLnDetLambda[k] - (D / 2) * LN_2PI - D / (2 * derived.beta[k]);
    }
    const cov = derived.coefCovariance.subarray(k * P * P, (k + 1) * P * P);
    coefCovFactor.set(cholesky(cov, P, `Λ⁻¹ of component ${k + 1}`), k * P * P);
    family.local(derived, k, response.subarray(k * w, (k + 1) * w));
  }
  const lambda = derived.lambda;
  return {
    spec,
    count: derived.count,
    logWeight: derived.eLnPi,
    mean: derived.mean,
    precisionFactor,
    covariateConst,
    coef: derived.coef,
    coefCovFactor,
    response,
    factors: covariateFactorsOf(spec).map((f) => f.local(spec, lambda, derived.layout)),
  };
}

/** KL(Beta(a, b) ‖ Beta(a0, b0)). */
function klBeta(a: number, b: number, a0: number, b0: number): number {
  const psiSum = digamma(a + b);
  return lnBeta(a0, b0) - lnBeta(a, b) + (a - a0) * (digamma(a) - psiSum) + (b - b0) * (digamma(b) - psiSum);
}

/** KL(q ‖ p) of the mixing weights (and of q(α) when α has a prior). */
export function klWeights(derived: Derived, state: GlobalState): number {
  const { spec } = derived;
  const { T, priors } = spec;
  let kl = 0;
  if (spec.weights === 'dirichlet') {
    // KL(Dir(α) ‖ Dir(α0 1)).
    const alpha0 = dirichletConcentration(spec);
    let total = 0;
    for (let k = 0; k < T; k++) total += derived.stickA[k];
    const psiTotal = digamma(total);
    kl += lnGamma(total) - lnGamma(T * alpha0);
    for (let k = 0; k < T; k++) {
      const a = derived.stickA[k];
      kl += lnGamma(alpha0) - lnGamma(a) + (a - alpha0) * (digamma(a) - psiTotal);
    }
  } else if (!state.alpha) {
    for (let k = 0; k < T - 1; k++) kl += klBeta(derived.stickA[k], derived.stickB[k], 1, priors.dpConcentration);
  } else {
    // E_q[ln q(v)] − E_q[ln p(v | α)] with E_q ln p(v_k | α) = E ln α + (E α − 1) E ln(1 − v_k),
    // plus KL(q(α) ‖ p(α)) (Blei & Jordan 2006, §4).
    const { shape, rate } = state.alpha;
    const eLnAlpha = digamma(shape) - Math.log(rate);
    const eAlpha = shape / rate;
    for (let k = 0; k < T - 1; k++) {
      const a = derived.stickA[k];
      const b = derived.stickB[k];
      const psiSum = digamma(a + b);
      const eLnV = digamma(a) - psiSum;
      const eLn1mV = digamma(b) - psiSum;
      const eLnQ = -lnBeta(a, b) + (a - 1) * eLnV + (b - 1) * eLn1mV;
      const eLnP = eLnAlpha + (eAlpha - 1) * eLn1mV;
      kl += eLnQ - eLnP;
    }
    const prior = priors.dpConcentrationPrior!;
    kl += klGamma(shape, rate, prior.shape, prior.rate);
  }
  return kl;
}

/**
 * Σ of KL(q ‖ p) over every global factor. The ELBO is Σ_n logsumexp_k ln ρ_nk minus this.
 * No constant is dropped, so ELBO values are comparable across versions and restarts.
 */
export function klDivergence(derived: Derived, state: GlobalState): number {
  const { spec } = derived;
  const { T, D, priors } = spec;
  let kl = klWeights(derived, state);

  // Covariates: E_q(Λ)[KL(N(m, (βΛ)⁻¹) ‖ N(m0, (β0 Λ)⁻¹))] + KL(W(W, ν) ‖ W(W0, ν0)).
  if (spec.covariateModel) {
    const beta0 = priors.meanPrecision;
    const nu0 = priorDegreesOfFreedom(spec);
    const w0inv = nu0 * priors.clusterVariance; // W0⁻¹ = w0inv · I
    const lnDetW0 = -D * Math.log(w0inv);
    const lnGammaNu0 = lnMultiGamma(nu0 / 2, D);
    for (let k = 0; k < T; k++) {
      const beta = derived.beta[k];
      const nu = derived.nu[k];
      const m = derived.mean.subarray(k * D, (k + 1) * D);
      const w = derived.wishart.subarray(k * D * D, (k + 1) * D * D);
      kl += 0.5 * (D * (beta0 / beta) - D + D * Math.log(beta / beta0) + beta0 * nu * quadraticForm(w, D, m));
      let traceW = 0;
      for (let i = 0; i < D; i++) traceW += w[i * D + i];
      kl +=
        ((nu - nu0) / 2) * multiDigamma(nu / 2, D) +
        lnGammaNu0 -
        lnMultiGamma(nu / 2, D) +
        (nu0 / 2) * (lnDetW0 - derived.lnDetW[k]) +
        (nu / 2) * (w0inv * traceW - D);
    }
  }

  for (const factor of covariateFactorsOf(spec)) kl += factor.kl(spec, derived.lambda, derived.layout);

  // Response: KL of the coefficients (and of what else the family has, e.g. the noise precision);
  // with shared coefficients, formed with the tied posterior (families/shared.ts).
  if (derived.shared) return kl + derived.shared.kl;
  return familyOf(spec.family).kl(derived, priorCoordinates(spec), kl);
}

/** A copy of the state with its components permuted: new component i is old order[i]. */
export function permuteComponents(spec: ModelSpec, state: GlobalState, order: number[]): GlobalState {
  const out = new Float64Array(state.lambda.length);
  const { blocks } = layoutOf(spec);
  for (let i = 0; i < spec.T; i++)
    for (const { offset, width } of blocks)
      out.set(state.lambda.subarray(offset + order[i] * width, offset + (order[i] + 1) * width), offset + i * width);
  return { lambda: out, alpha: state.alpha };
}

/** Components sorted by expected size N_k, largest first (stick-breaking favours this order). */
export function sortBySize(spec: ModelSpec, state: GlobalState): GlobalState {
  const layout = layoutOf(spec);
  const order = Array.from({ length: spec.T }, (_, k) => k).sort(
    (a, b) => state.lambda[layout.count + b] - state.lambda[layout.count + a],
  );
  return permuteComponents(spec, state, order);
}

/**
 * Σ_n r_n (x_n − m)ᵀ A (x_n − m) from the statistics N = Σ r, s = Σ r x, S = Σ r x xᵀ:
 * tr(A S) − 2 mᵀ A s + N mᵀ A m. Shapes: A, S (D, D); m, s (D).
 */
export function weightedScatter(a: Float64Array, D: number, m: ArrayLike<number>, n: number, s: ArrayLike<number>, ss: Float64Array): number {
  return traceOfProduct(a, ss, D) - 2 * quadraticForm(a, D, m, s) + n * quadraticForm(a, D, m);
}

