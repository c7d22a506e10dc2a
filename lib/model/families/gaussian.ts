/**
 * Gaussian response (linear regression, PRML 10.3): y | u, k ~ N(θ_kᵀu, τ_k⁻¹),
 * θ_k | τ_k ~ N(0, (τ_k Λ0)⁻¹), τ_k ~ Gamma(a0, b0); conjugate, so λ0 + S is the exact update.
 * y is standardized. Its own coordinate per component (block syy) is c_k = 2 b_k + h_kᵀθ_k, with
 * statistic Σ r y²; derived: a_k = a0 + N_k/2, b_k = (c_k − h_kᵀθ_k)/2.
 *
 *   E ln p(y | u, k) = ½ (ψ(a_k) − ln b_k) − ½ ln 2π − ½ ((a_k/b_k)(y − θ_kᵀu)² + uᵀΛ_k⁻¹u)
 */
import { lowerProduct, quadraticForm, traceOfProduct } from '../../math/linalg.js';
import { digamma, klGamma, LN_2PI } from '../../math/special.js';
import { ownPositions, priorCoordinates, type Layout, type ModelSpec } from '../spec.js';
import type { Derived } from '../posterior.js';
import { coefficientKl, deriveCoefficients, weightedResidualSquares } from './coefficients.js';
import type { ResponseFamily } from './family.js';
import { embed, inverseAndLogDet, matMulT, mulTVec, mulVec, submatrix, tiedBlocks, type SharedDerived } from './shared.js';

/** q(τ_k) = Gamma(a_k, b_k) of a gaussian model's component k. */
export function noiseOf(d: Derived, k: number): { shape: number; rate: number } {
  return { shape: d.response[2 * k], rate: d.response[2 * k + 1] };
}

/**
 * Σ r y u and Σ r y² from residual statistics, in float64. With θ₀ = the float32 coefficients
 * the kernel used (θ₀_i = −qu_ik / qu_Pk) and e = y − θ₀ᵀu:
 *   Σ r y u = Σ r e u + (Σ r u uᵀ) θ₀,   Σ r y² = Σ r e² + 2 θ₀ᵀ Σ r e u + θ₀ᵀ (Σ r u uᵀ) θ₀.
 * Why: the noise rate b_k = (c_k − h_kᵀ θ_k)/2 is the residual sum of squares, a small difference
 * of large raw moments. Raw moments summed in float32 lose it (measured: ELBO dropping by ~1e3 on
 * 1M rows with tight regressions); residual moments keep it, since the identity
 * c − hᵀΛ⁻¹h = Σ r e² − (Σ r e u)ᵀ Λ⁻¹ (Σ r e u) (up to the prior) holds for any θ₀.
 * `sumE` is (P+1, T) with Σ r q e u_i at [i·T + k]; needs the suu block of `stats` already filled
 * (w = r for the gaussian response).
 */
function uncenterResponse(qu: Float32Array, k: number, T: number, P: number, sumE: Float64Array, sumEE: number, stats: Float64Array, layout: Layout): void {
  const q = qu[P * T + k];
  const theta = new Float64Array(P);
  for (let i = 0; i < P; i++) theta[i] = -qu[i * T + k] / q;
  const suu = stats.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P);
  let yy = sumEE / (q * q);
  for (let i = 0; i < P; i++) {
    const eu = sumE[i * T + k] / q;
    let uuTheta = 0;
    for (let j = 0; j < P; j++) uuTheta += suu[i * P + j] * theta[j];
    stats[layout.syu + k * P + i] = eu + uuTheta;
    yy += 2 * theta[i] * eu + theta[i] * uuTheta;
  }
  stats[layout.syy + k] = yy;
}

/** Fixed-point iterations of the shared-coefficient step at most, and the relative change of every E[τ_k] that ends them. */
const SHARED_ITERATIONS = 500;
const SHARED_TOLERANCE = 1e-12;

/**
 * Shared coefficients for the gaussian response (docs/model.md §15). β ~ N(0, Λ0_AA⁻¹) cannot scale
 * with one component's noise, so the joint is not Normal-Gamma: a structured mean field
 * q(β) Π_k q(b_k, τ_k), each q(b_k, τ_k) Normal-Gamma. With U_k, h_k, Σ r y² the component's
 * statistics (λ − λ0) and (m, Σ) = E[β], Cov[β], the coordinate updates are (PRML 10.9):
 *
 *   q(b_k, τ_k) | q(β): the Normal-Gamma of the residual y − βᵀa in expectation over β:
 *     J_bb = Λ0_BB + U_BB,  h' = h_B − U_BA m,  E[b_k] = J_bb⁻¹ h',  a_k = a0 + N_k/2,
 *     b_k = b0 + ½ (Σ r y² − 2 mᵀh_A + mᵀU_AA m + tr(Σ U_AA) − h'ᵀ J_bb⁻¹ h')
 *   q(β) | q(b, τ): Λ_β = Λ0_AA + Σ_k E[τ_k] U_k,AA,  Λ_β m = Σ_k E[τ_k] (h_k,A − U_k,AB E[b_k]).
 *
 * Given every E[τ_k], the two mean equations are linear; eliminating E[b_k] gives m directly,
 * (Λ0_AA + Σ_k E[τ_k] (U_AA − X_k U_BA)) m = Σ_k E[τ_k] (h_A − X_k h_B), X_k = U_AB J_bb⁻¹, so the
 * iteration runs on the T numbers E[τ_k] only: m and Σ from them, then every q(b_k, τ_k), until no
 * E[τ_k] moves by more than SHARED_TOLERANCE (relative). The result satisfies both coordinate
 * conditions, a stationary point of the ELBO given the statistics; the start (each component's
 * untied fit) is a function of λ alone, so derive() stays a function of λ.
 *
 * For the local step: E[τ (y − θᵀu)²] = E[τ] (y − E[θ]ᵀu)² + E[τ] aᵀΣa + vᵀJ_bb⁻¹v (a, v: u at A, B),
 * so coefCovariance_k = [[E[τ_k] Σ, 0], [0, J_bb,k⁻¹]] is the matrix of the spread, as Λ_k⁻¹ is without
 * sharing. KL = KL(q(β) ‖ p(β)) + Σ_k (E_τ KL(q(b_k | τ_k) ‖ p(b_k | τ_k)) + KL(q(τ_k) ‖ p(τ_k))).
 */
function deriveSharedGaussian(spec: ModelSpec, lambda: Float64Array, layout: Layout, count: Float64Array): SharedDerived {
  const { T, P, priors } = spec;
  const A = spec.shared ?? [];
  const B = ownPositions(spec);
  const S = A.length;
  const Q = B.length;
  const lambda0 = priorCoordinates(spec);
  const prior = lambda0.subarray(layout.suu, layout.suu + P * P);
  const priorAA = submatrix(prior, P, A, A);
  const priorBB = submatrix(prior, P, B, B);
  const lnDetPriorAA = inverseAndLogDet(priorAA.slice(), S, 'Λ0').lnDet;
  const lnDetPriorBB = inverseAndLogDet(priorBB.slice(), Q, 'Λ0').lnDet;
  const blocks = Array.from({ length: T }, (_, k) => tiedBlocks(spec, lambda, lambda0, layout, k, A, B));
  const yy = Float64Array.from({ length: T }, (_, k) => lambda[layout.syy + k] - lambda0[layout.syy + k]); // Σ r y²
  // X_k U_k,BA and X_k h_k,B: the b_k blocks eliminated.
  const reduced = blocks.map((t) => ({ xu: matMulT(t.x, t.uAB, S, Q, S), xh: mulVec(t.x, t.hB, S, Q) }));

  // Start: each component's untied Normal-Gamma fit (the family's derive without sharing).
  const { coef: untied } = deriveCoefficients(spec, lambda, layout);
  const eTau = new Float64Array(T);
  const noise = new Float64Array(2);
  for (let k = 0; k < T; k++) {
    gaussian.derive(spec, lambda, layout, k, count[k], untied.subarray(k * P, (k + 1) * P), noise);
    eTau[k] = noise[0] / noise[1];
  }

  const shape = new Float64Array(T);
  const rate = new Float64Array(T);
  const own = new Float64Array(T * Q);
  let beta: Float64Array = new Float64Array(S);
  let covBeta: Float64Array = new Float64Array(S * S);
  let lnDetBeta = 0;
  for (let it = 0; it < SHARED_ITERATIONS; it++) {
    const m = priorAA.slice();
    const precision = priorAA.slice();
    const g = new Float64Array(S);
    for (let k = 0; k < T; k++) {
      const t = blocks[k];
      for (let i = 0; i < S * S; i++) {
        m[i] += eTau[k] * (t.uAA[i] - reduced[k].xu[i]);
        precision[i] += eTau[k] * t.uAA[i];
      }
      for (let i = 0; i < S; i++) g[i] += eTau[k] * (t.hA[i] - reduced[k].xh[i]);
    }
    beta = mulVec(inverseAndLogDet(m, S, 'the shared coefficients\' precision').inverse, g, S, S);
    ({ inverse: covBeta, lnDet: lnDetBeta } = inverseAndLogDet(precision, S, 'the shared coefficients\' precision'));
    let change = 0;
    for (let k = 0; k < T; k++) {
      const t = blocks[k];
      const h = t.hB.slice();
      const ub = mulTVec(t.uAB, beta, S, Q);
      for (let i = 0; i < Q; i++) h[i] -= ub[i];
      const b = mulVec(t.jbbInverse, h, Q, Q);
      own.set(b, k * Q);
      let hb = 0;
      for (let i = 0; i < Q; i++) hb += h[i] * b[i];
      let ha = 0;
      for (let i = 0; i < S; i++) ha += beta[i] * t.hA[i];
      const residual = yy[k] - 2 * ha + quadraticForm(t.uAA, S, beta) + traceOfProduct(covBeta, t.uAA, S) - hb;
      shape[k] = priors.noiseShape + count[k] / 2;
      // The floor guards rounding when the fit is exact (as derive's).
      rate[k] = Math.max(priors.noiseRate + residual / 2, 1e-12 * priors.noiseRate);
      const next = shape[k] / rate[k];
      change = Math.max(change, Math.abs(next - eTau[k]) / next);
      eTau[k] = next;
    }
    if (change <= SHARED_TOLERANCE) break;
  }

  const coef = new Float64Array(T * P);
  const coefCovariance = new Float64Array(T * P * P);
  const lnDetCoefPrecision = new Float64Array(T);
  const response = new Float64Array(T * 2);
  let kl = 0.5 * (traceOfProduct(priorAA, covBeta, S) - S + quadraticForm(priorAA, S, beta) + lnDetBeta - lnDetPriorAA);
  for (let k = 0; k < T; k++) {
    const t = blocks[k];
    const tau = shape[k] / rate[k];
    const b = own.subarray(k * Q, (k + 1) * Q);
    embed(P, A, B, k, beta, b, covBeta.map((v) => tau * v), null, t.jbbInverse, coef, coefCovariance);
    // −ln|[[τ Σ, 0], [0, J_bb⁻¹]]| = −S ln τ + ln|Λ_β| + ln|J_bb|
    lnDetCoefPrecision[k] = -S * Math.log(tau) + lnDetBeta + t.lnDetJbb;
    response[2 * k] = shape[k];
    response[2 * k + 1] = rate[k];
    kl += 0.5 * (traceOfProduct(priorBB, t.jbbInverse, Q) - Q + tau * quadraticForm(priorBB, Q, b) + t.lnDetJbb - lnDetPriorBB);
    kl += klGamma(shape[k], rate[k], priors.noiseShape, priors.noiseRate);
  }
  return { coef, coefCovariance, lnDetCoefPrecision, response, shared: { index: A, own: B, mean: beta, covariance: covBeta, kl } };
}

export const gaussian: ResponseFamily = {
  name: 'gaussian',
  description: 'linear regression with normal noise',
  target: { kind: 'number', standardized: true },
  acceptsOffset: false,
  exactUpdate: true,
  link: 'identity',
  coefficientUnit: 'sd of y',
  predicted: 'mean',
  extraWidth: () => 1,
  derivedWidth: () => 2, // a_k, b_k
  localWidth: () => 2, // E[τ_k], ½ (ψ(a_k) − ln b_k) − ½ ln 2π

  priorExtra: (priors) => [2 * priors.noiseRate],

  derive(spec, lambda, layout, k, count, theta, out) {
    const { P } = spec;
    const h = lambda.subarray(layout.syu + k * P, layout.syu + (k + 1) * P);
    out[0] = spec.priors.noiseShape + count / 2;
    let hTheta = 0;
    for (let i = 0; i < P; i++) hTheta += h[i] * theta[i];
    // b_k = (c_k − h_kᵀ θ_k) / 2; the floor guards rounding when the fit is exact.
    out[1] = Math.max((lambda[layout.syy + k] - hTheta) / 2, 1e-12 * spec.priors.noiseRate);
  },

  deriveShared: deriveSharedGaussian,

  local(d, k, out) {
    const { shape: a, rate: b } = noiseOf(d, k);
    out[0] = a / b;
    out[1] = 0.5 * (digamma(a) - Math.log(b)) - 0.5 * LN_2PI;
  },

  kl(d, lambda0, total) {
    const { priors } = d.spec;
    for (let k = 0; k < d.spec.T; k++) {
      const { shape, rate } = noiseOf(d, k);
      total += coefficientKl(d, lambda0, k, shape / rate);
      total += klGamma(shape, rate, priors.noiseShape, priors.noiseRate);
    }
    return total;
  },

  hardWeights(y, _offset, out) {
    out[0] = 1;
    out[1] = y;
  },

  validExtra: (extra) => extra.every((v) => v > 0), // c_k = 2 b_k + h_kᵀθ_k

  rows: {
    logLik(local, k, eta, spread, y) {
      const e = y - eta;
      return local[2 * k + 1] - 0.5 * (local[2 * k] * e * e + spread);
    },
    weights(_local, _k, r, _eta, y, _offset, _memo, out) {
      out[0] = r;
      out[1] = r * y;
    },
    extra(r, y, stats, at) {
      stats[at] += r * y * y;
    },
    // −½ (E[τ](y − θᵀu)² + uᵀΛ⁻¹u) = −½ E[τ] y² + E[τ] y θᵀu − ½ uᵀ(E[τ] θθᵀ + C Cᵀ)u  (PRML 10.3 in u)
    inputQuadratic(params, k, y, a, b) {
      const { P } = params.spec;
      const tau = params.response[2 * k];
      const theta = params.coef.subarray(k * P, (k + 1) * P);
      const cct = lowerProduct(params.coefCovFactor, P, k * P * P); // Λ⁻¹ = C Cᵀ
      for (let i = 0; i < P; i++) {
        b[i] = tau * y * theta[i];
        for (let j = 0; j <= i; j++) a[i * P + j] = a[j * P + i] = tau * theta[i] * theta[j] + cct[i * P + j];
      }
      return params.response[2 * k + 1] - 0.5 * tau * y * y;
    },
  },

  // ‖[u, y] G_k‖² = ½ uᵀΛ_k⁻¹u + ½ E[τ_k](y − θ_kᵀu)² with qu_k = √(E[τ_k]/2) [−θ_k; 1] and s = √½,
  // so ln ρ = c_k − that; the statistics are the residual ones (uncenterResponse).
  fused: {
    columns(local, k, qu) {
      const { P } = local.spec;
      const q = Math.sqrt(local.response[2 * k] / 2);
      for (let i = 0; i < P; i++) qu[i] = -q * local.coef[k * P + i];
      qu[P] = q;
      return { spreadScale: Math.SQRT1_2, constant: local.response[2 * k + 1] };
    },
    chunk(tf, t) {
      return {
        lnRho: tf.sub(t.bias, t.quad),
        weights(r) {
          const rRes = tf.mul(r, t.lin) as typeof r; // r q (y − θᵀu)
          return { w: r, v: rRes, ee: tf.sum(tf.mul(rRes, t.lin), 0) };
        },
      };
    },
    finish: uncenterResponse,
  },

  expectedLogLik(d, stats, k) {
    // Σ r [½ (ψ(a) − ln b) − ½ ln 2π − ½ (E τ (y − θᵀu)² + uᵀ Λ⁻¹ u)]
    const { P } = d.spec;
    const { layout } = d;
    const { shape: a, rate: b } = noiseOf(d, k);
    const theta = d.coef.subarray(k * P, (k + 1) * P);
    const cov = d.coefCovariance.subarray(k * P * P, (k + 1) * P * P);
    const suu = stats.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P);
    const syu = stats.subarray(layout.syu + k * P, layout.syu + (k + 1) * P);
    const residual = weightedResidualSquares(theta, P, stats[layout.syy + k], syu, suu);
    const n = stats[layout.count + k];
    return n * (0.5 * (digamma(a) - Math.log(b)) - 0.5 * LN_2PI) - 0.5 * ((a / b) * residual + traceOfProduct(cov, suu, P));
  },

  plugIn: {
    // Σ r ln N(y | θ̂ᵀu, τ̂⁻¹) with τ̂ = E[τ] = a/b; θ and τ are P + 1 free parameters.
    logLik(d, stats, k) {
      const { P } = d.spec;
      const { layout } = d;
      const { shape, rate } = noiseOf(d, k);
      const tau = shape / rate;
      const theta = d.coef.subarray(k * P, (k + 1) * P);
      const syu = stats.subarray(layout.syu + k * P, layout.syu + (k + 1) * P);
      const suu = stats.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P);
      const residual = weightedResidualSquares(theta, P, stats[layout.syy + k], syu, suu);
      const n = stats[layout.count + k];
      return n * (0.5 * Math.log(tau) - 0.5 * LN_2PI) - 0.5 * tau * residual;
    },
    parameters: (P) => P + 1,
  },

  // θ's marginal is Student-t with covariance Λ⁻¹ b/(a − 1).
  coefficientScale(d, k) {
    const { shape, rate } = noiseOf(d, k);
    return rate / Math.max(shape - 1, 1e-12);
  },
  summarize(d, k, std, out) {
    out.noiseSd = std.ySd * Math.sqrt(gaussian.coefficientScale!(d, k));
  },

  // Student-t predictive (PRML 3.58 with the noise integrated out): mean θᵀu, variance
  // (b/a) dof/(dof − 2) (1 + uᵀΛ⁻¹u), dof = 2a (infinite when 2a ≤ 2).
  predictive: {
    columns: ['prediction', 'prediction_sd'],
    constant(d, k) {
      const { shape: a, rate: b } = noiseOf(d, k);
      const dof = 2 * a;
      return (b / a) * (dof > 2 ? dof / (dof - 2) : Infinity);
    },
    add(acc, weight, eta, spread, _offset, noiseVariance) {
      acc[0] += weight * eta;
      acc[1] += weight * (noiseVariance * (1 + spread) + eta * eta);
    },
    mean: (acc, std) => std.yMean + std.ySd * acc[0],
    sd: (acc, std) => std.ySd * Math.sqrt(Math.max(0, acc[1] - acc[0] * acc[0])),
  },
  inverseLink: (eta) => eta,
  fit(actual, predicted) {
    let s = 0;
    for (let i = 0; i < actual.length; i++) s += (actual[i] - predicted[i]) ** 2;
    return ['RMSE of the predictive mean', Math.sqrt(s / actual.length)];
  },
};
