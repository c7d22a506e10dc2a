/**
 * Bernoulli response (logistic regression, PRML 10.6): y ∈ {0, 1}, P(y = 1 | u, k) = σ(θ_kᵀu),
 * θ_k ~ N(0, Λ0⁻¹). The Jaakkola–Jordan bound with the local parameter at its optimum for the
 * current q, ξ² = uᵀ(Λ_k⁻¹ + θ_kθ_kᵀ)u (PRML 10.163), stands in for E ln p(y | u, k):
 *
 *   ln σ(ξ) + (y − ½) θ_kᵀu − ξ/2                      (PRML 10.152 at that ξ)
 *
 * and is quadratic in θ, so λ0 + S with S = Σ r [2 λ(ξ) u uᵀ, (y − ½) u] is its exact maximizer
 * (λ(ξ) = tanh(ξ/2)/(4ξ)). y is not standardized. Its block syy is kept, always 0, so that
 * posterior.json files written before the family seam keep their layout. A missing input that is
 * also a clustering covariate is integrated out with ξ tightened at q(x_m) (docs/model.md §18).
 */
import { lowerProduct } from '../../math/linalg.js';
import { jjLambda, logSigmoid } from '../../math/special.js';
import { addCoefficientKl, copyUSums, linearPredictorColumns } from './coefficients.js';
import type { ResponseFamily } from './family.js';

/** Below this ξ, λ(ξ) = 1/8 − ξ²/96 (truncation error < 1e-13), avoiding 0/0 in float32. */
const XI_SMALL = 1e-3;

export const bernoulli: ResponseFamily = {
  name: 'bernoulli',
  description: 'logistic regression of a 0/1 (or true/false) target',
  target: { kind: 'binary', standardized: false },
  acceptsOffset: false,
  exactUpdate: true,
  link: 'logit',
  coefficientUnit: 'log-odds',
  predicted: 'P(y = 1)',
  extraWidth: () => 1,
  derivedWidth: () => 0,
  localWidth: () => 0,

  priorExtra: () => [0],
  derive() {},
  local() {},
  kl: addCoefficientKl,

  // λ(0) = 1/8, so 2 λ(ξ) u uᵀ = u uᵀ / 4 and the target enters as y − ½.
  hardWeights(y, _offset, out) {
    out[0] = 0.25;
    out[1] = y - 0.5;
  },

  validExtra: (extra) => extra.every((v) => v === 0),

  rows: {
    logLik(_local, k, eta, spread, y, _offset, memo) {
      const xi = Math.sqrt(spread + eta * eta); // PRML 10.163
      memo[k] = jjLambda(xi);
      return logSigmoid(xi) + (y - 0.5) * eta - xi / 2; // PRML 10.152 at the optimal ξ
    },
    weights(_local, k, r, _eta, y, _offset, memo, out) {
      out[0] = 2 * r * memo[k];
      out[1] = r * (y - 0.5);
    },
    // At any ξ the bound is ln σ(ξ) − ξ/2 + λ(ξ)ξ² + (y − ½) θᵀu − λ(ξ) uᵀE[θθᵀ]u (PRML 10.152 with
    // E[θθᵀ] = Λ⁻¹ + θθᵀ), quadratic in u; its optimal ξ² = E[uᵀE[θθᵀ]u] = tr(E[θθᵀ] E[u uᵀ]) (10.163).
    tightened: true,
    inputQuadratic(params, k, y, a, b, { euu }, memo) {
      const { P } = params.spec;
      const theta = params.coef.subarray(k * P, (k + 1) * P);
      const cct = lowerProduct(params.coefCovFactor, P, k * P * P); // Λ⁻¹ = C Cᵀ
      let xi2 = 0;
      for (let i = 0; i < P; i++)
        for (let j = 0; j <= i; j++) {
          const m = cct[i * P + j] + theta[i] * theta[j]; // E[θθᵀ]_ij
          a[i * P + j] = a[j * P + i] = m;
          xi2 += (i === j ? 1 : 2) * m * euu[i * P + j];
        }
      const xi = Math.sqrt(Math.max(xi2, 0));
      const lambda = (memo[k] = jjLambda(xi));
      for (let i = 0; i < P * P; i++) a[i] *= 2 * lambda;
      for (let i = 0; i < P; i++) b[i] = (y - 0.5) * theta[i];
      return logSigmoid(xi) - xi / 2 + lambda * xi * xi;
    },
  },

  // G_k = [C_k; 0 | θ_k; 0] gives ξ² = uᵀΛ⁻¹u + (θᵀu)² (10.163) and qu_k = [θ_k; 0] gives θᵀu;
  // ln σ(ξ) is computed as −(ξ/2 + ln(1 + e^{−ξ})) for ξ ≥ 0; λ(ξ) = 1/8 − ξ²/96 below 1e-3.
  fused: {
    columns: linearPredictorColumns,
    chunk(tf, t) {
      const y = t.y;
      const xi = tf.sqrt(t.quad);
      const bound = tf.neg(tf.add(tf.mul(xi, 0.5), tf.log1p(tf.exp(tf.neg(xi)))));
      const lnRho = tf.add(tf.add(bound, tf.mul(tf.sub(y, 0.5), t.lin)), t.bias);
      const xiSafe = tf.maximum(xi, XI_SMALL);
      const lambda = tf.where(
        tf.less(xi, XI_SMALL),
        tf.sub(0.125, tf.div(tf.square(xi), 96)),
        tf.div(tf.tanh(tf.mul(xiSafe, 0.5)), tf.mul(xiSafe, 4)),
      );
      return {
        lnRho,
        weights: (r) => ({ w: tf.mul(r, tf.mul(lambda, 2)), v: tf.mul(r, tf.sub(y, 0.5)) }),
      };
    },
    finish: copyUSums,
  },

  // The probit approximation of the logistic predictive, σ(κ θᵀu), κ = (1 + π uᵀΛ⁻¹u / 8)^(−½) (PRML 4.153–4.154).
  predictive: {
    columns: ['probability'],
    constant: () => 0,
    add(acc, weight, eta, spread) {
      const kappa = 1 / Math.sqrt(1 + (Math.PI * spread) / 8);
      acc[0] += weight / (1 + Math.exp(-kappa * eta));
    },
    mean: (acc) => acc[0],
    // ln P(y | z=k) = ln σ(±κ_k θ_kᵀu) (PRML 4.153–4.155).
    logDensity(y, eta, spread) {
      const kappa = 1 / Math.sqrt(1 + (Math.PI * spread) / 8);
      return logSigmoid(y === 1 ? kappa * eta : -kappa * eta);
    },
  },
  inverseLink: (eta) => 1 / (1 + Math.exp(-eta)),
  fit(actual, predicted) {
    const clip = (p: number) => Math.min(1 - 1e-12, Math.max(1e-12, p));
    let s = 0;
    for (let i = 0; i < actual.length; i++) s += actual[i] ? Math.log(clip(predicted[i])) : Math.log(1 - clip(predicted[i]));
    return ['log-loss', -s / actual.length];
  },
};
