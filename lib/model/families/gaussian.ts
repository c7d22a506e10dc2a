/**
 * Gaussian response (linear regression, PRML 10.3): y | u, k ~ N(θ_kᵀu, τ_k⁻¹),
 * θ_k | τ_k ~ N(0, (τ_k Λ0)⁻¹), τ_k ~ Gamma(a0, b0); conjugate, so λ0 + S is the exact update.
 * y is standardized. Its own coordinate per component (block syy) is c_k = 2 b_k + h_kᵀθ_k, with
 * statistic Σ r y²; derived: a_k = a0 + N_k/2, b_k = (c_k − h_kᵀθ_k)/2.
 *
 *   E ln p(y | u, k) = ½ (ψ(a_k) − ln b_k) − ½ ln 2π − ½ ((a_k/b_k)(y − θ_kᵀu)² + uᵀΛ_k⁻¹u)
 */
import { traceOfProduct } from '../../math/linalg.js';
import { digamma, klGamma, LN_2PI } from '../../math/special.js';
import type { Layout } from '../spec.js';
import type { Derived } from '../posterior.js';
import { coefficientKl, weightedResidualSquares } from './coefficients.js';
import type { ResponseFamily } from './family.js';

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

export const gaussian: ResponseFamily = {
  name: 'gaussian',
  description: 'linear regression with normal noise',
  target: { kind: 'number', standardized: true },
  acceptsOffset: false,
  exactUpdate: true,
  link: 'identity',
  coefficientUnit: 'sd of y',
  predicted: 'mean',
  extraWidth: 1,
  derivedWidth: 2, // a_k, b_k
  localWidth: 2, // E[τ_k], ½ (ψ(a_k) − ln b_k) − ½ ln 2π

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
