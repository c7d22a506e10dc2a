/**
 * Poisson response (log link; docs/model.md §14): y ∈ {0, 1, 2, …}, y | u, k ~ Poisson(e^{θ_kᵀu + o}),
 * θ_k ~ N(0, Λ0⁻¹), o the row's offset (ln of an exposure; 0 without one). y is not standardized.
 *
 * Not conjugate. q(θ_k) = N(θ_k, Λ_k⁻¹) is kept Gaussian and the expected log-likelihood is exact,
 * in closed form through the log-normal mean E_q[e^{θᵀu}] = e^{θ_kᵀu + uᵀΛ_k⁻¹u/2}:
 *
 *   E ln p(y | u, k) = y (η + o) − μ̄ − ln y!,   η = θ_kᵀu,   μ̄ = e^{η + o + uᵀΛ_k⁻¹u/2}.
 *
 * The update is the natural-gradient step in the Gaussian's natural coordinates (Khan & Lin 2017,
 * conjugate-computation VI), whose gradient in the mean parameters is a sum over rows:
 *
 *   Λ̂_k = Λ0 + Σ_n r_nk μ̄_n u uᵀ,   ĥ_k = Σ_n r_nk (y_n − μ̄_n + μ̄_n η_n) u,
 *
 * so the statistics are w_uu = r μ̄ and w_u = r (y − μ̄ + μ̄ η) at the current q, and λ0 + S is a
 * Newton step on θ with the expected Hessian (a Laplace-style step: θ ← θ + Λ̂⁻¹ ∇). It can
 * overshoot, so `exactUpdate` is false: batch VB halves a step that lowers the ELBO
 * (lib/inference/vb.ts shortenedStep); SVI's convex steps are already short.
 */
import { lnGamma } from '../../math/special.js';
import { addCoefficientKl, copyUSums, linearPredictorColumns } from './coefficients.js';
import type { ResponseFamily } from './family.js';

/**
 * Log-rates are capped here in the local step: e^80 ≈ 5.5e34 still fits float32 (the fast kernel),
 * and a component whose rate for a row is that large is one the row does not belong to (its term
 * is about −e^80 either way), so the cap changes no responsibility; it keeps r · μ̄ finite.
 */
const MAX_LOG_RATE = 80;

/** ln y! for counts, from a table below 4096 (the reference path evaluates it for every row and component). */
const FACTORIALS = Float64Array.from({ length: 4096 }, (_, y) => lnGamma(y + 1));
const lnFactorial = (y: number) => (y < FACTORIALS.length ? FACTORIALS[y] : lnGamma(y + 1));

export const poisson: ResponseFamily = {
  name: 'poisson',
  description: 'Poisson regression of a count, log link, optional offset or exposure',
  target: { kind: 'count', standardized: false },
  acceptsOffset: true,
  exactUpdate: false,
  link: 'log',
  coefficientUnit: 'log rate',
  predicted: 'mean count',
  extraWidth: () => 0,
  derivedWidth: () => 0,
  localWidth: () => 0,

  priorExtra: () => [],
  derive() {},
  local() {},
  kl: addCoefficientKl,

  // Before any posterior: the first step of the Poisson GLM's iteratively reweighted least squares,
  // at the row's own working fit μ0 = y + ½, η0 = ln μ0 − o (the weights above at that η, zero spread).
  hardWeights(y, offset, out) {
    const mu = y + 0.5;
    out[0] = mu;
    out[1] = y - mu + mu * (Math.log(mu) - offset);
  },

  validExtra: () => true,

  rows: {
    logLik(_local, k, eta, spread, y, offset, memo) {
      const mu = Math.exp(Math.min(eta + offset + spread / 2, MAX_LOG_RATE));
      memo[k] = mu;
      return y * (eta + offset) - mu - lnFactorial(y);
    },
    weights(_local, k, r, eta, y, _offset, memo, out) {
      const mu = memo[k];
      out[0] = r * mu;
      out[1] = r * (y - mu + mu * eta);
    },
  },

  // qu_k = [θ_k; 0] gives η; G_k = [C_k; 0 | qu_k] gives ‖[u, y] G_k‖² = uᵀΛ⁻¹u + η², so the spread
  // is quad − η² (float32: its error is ~1e-7 η², a relative 1e-7 η² in μ̄). y·o − ln y! does not
  // depend on k: it is summed once per chunk in float64 (rowConstant).
  fused: {
    columns: linearPredictorColumns,
    chunk(tf, t) {
      const eta = t.lin;
      const y = t.y;
      const spread = tf.relu(tf.sub(t.quad, tf.square(eta)));
      const exponent = tf.add(eta, tf.mul(spread, 0.5));
      const mu = tf.exp(tf.minimum(t.offset ? tf.add(exponent, t.offset) : exponent, MAX_LOG_RATE));
      const lnRho = tf.add(tf.sub(tf.mul(y, eta), mu), t.bias);
      return {
        lnRho,
        weights: (r) => {
          const w = tf.mul(r, mu) as typeof r;
          return { w, v: tf.add(tf.mul(r, y), tf.mul(w, tf.sub(eta, 1))) as typeof r };
        },
      };
    },
    finish: copyUSums,
    rowConstant(y, offset) {
      let s = 0;
      for (let n = 0; n < y.length; n++) s += (offset ? y[n] * offset[n] : 0) - lnFactorial(y[n]);
      return s;
    },
  },

  // Component k's predictive of y is Poisson with a log-normal rate: mean e^{η + o + s/2}, and
  // E[y²] = mean + mean² e^{s} (s = uᵀΛ_k⁻¹u); its log density is taken at the mean rate (a
  // plug-in: the Poisson–log-normal mass has no closed form).
  predictive: {
    columns: ['prediction', 'prediction_sd'],
    constant: () => 0,
    add(acc, weight, eta, spread, offset) {
      const mean = Math.exp(eta + offset + spread / 2);
      acc[0] += weight * mean;
      acc[1] += weight * (mean + mean * mean * Math.exp(spread));
    },
    mean: (acc) => acc[0],
    sd: (acc) => Math.sqrt(Math.max(0, acc[1] - acc[0] * acc[0])),
    logDensity(y, eta, spread, offset) {
      const rate = Math.exp(eta + offset + spread / 2);
      return y * Math.log(rate) - rate - lnFactorial(y);
    },
  },
  inverseLink: (eta) => Math.exp(eta),
  fit(actual, predicted) {
    // Mean Poisson deviance 2 [y ln(y/μ) − (y − μ)] (0 ln 0 = 0).
    let s = 0;
    for (let i = 0; i < actual.length; i++) {
      const [y, mu] = [actual[i], Math.max(predicted[i], 1e-300)];
      s += 2 * ((y > 0 ? y * Math.log(y / mu) : 0) - (y - mu));
    }
    return ['mean Poisson deviance', s / actual.length];
  },
};
