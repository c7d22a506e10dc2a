/**
 * Predictions from a posterior document for new rows: cluster membership p(z | x) from the
 * covariate model's Student-t predictive (PRML 10.81) or the mixing weights when conditional-only,
 * and the response from each component's predictive (Student-t for gaussian, the probit-style
 * approximation of the logistic predictive, PRML 4.153, for bernoulli), mixed by p(z | x) over
 * the components posterior.json reports.
 */
import type { Batch } from '../kernel/types.js';
import { quadraticForm } from '../math/linalg.js';
import { lnGamma } from '../math/special.js';
import { derive, type Derived } from './posterior.js';
import { clusterNumbers, modelOf, type PosteriorDocument } from './summary.js';

export interface Prediction {
  /** Reported cluster number (position in posterior.json's components), −1 if none. */
  cluster: Int32Array;
  clusterProbability: Float64Array;
  /** Gaussian: predictive mean and sd of y in data units. Bernoulli: P(y = 1). */
  mean: Float64Array;
  sd?: Float64Array;
}

/** ln St(x | m, L, dof) for all k: the covariate model's predictive density (PRML 10.81–10.82). */
function logStudentCovariates(d: Derived, x: Float64Array, out: Float64Array) {
  const { D, T } = d.spec;
  for (let k = 0; k < T; k++) {
    const dof = d.nu[k] + 1 - D;
    const scale = (dof * d.beta[k]) / (1 + d.beta[k]); // L_k = scale · W_k
    const w = d.wishart.subarray(k * D * D, (k + 1) * D * D);
    const diff = new Float64Array(D);
    for (let i = 0; i < D; i++) diff[i] = x[i] - d.mean[k * D + i];
    const delta2 = scale * quadraticForm(w, D, diff);
    const lnDetL = D * Math.log(scale) + d.lnDetW[k];
    out[k] =
      lnGamma((dof + D) / 2) - lnGamma(dof / 2) + 0.5 * lnDetL - (D / 2) * Math.log(dof * Math.PI) -
      ((dof + D) / 2) * Math.log1p(delta2 / dof);
  }
}

export function predict(doc: PosteriorDocument, batch: Batch): Prediction {
  const { spec, state } = modelOf(doc);
  const d = derive(spec, state);
  const { T, D, P } = spec;
  const std = doc.state.standardization;
  const clusterOf = clusterNumbers(d);
  const n = batch.n;
  const out: Prediction = {
    cluster: new Int32Array(n),
    clusterProbability: new Float64Array(n),
    mean: new Float64Array(n),
    ...(spec.family === 'gaussian' ? { sd: new Float64Array(n) } : {}),
  };
  const logW = new Float64Array(T);
  const lnPi = Array.from(d.ePi, Math.log);
  for (let row = 0; row < n; row++) {
    if (spec.covariateModel) logStudentCovariates(d, batch.x.subarray(row * D, (row + 1) * D), logW);
    // Only the reported components (expected to hold ≥ 1 row) take part, renormalized: an empty
    // component keeps its vague prior, whose Student-t has no finite variance (2a ≤ 2).
    let max = -Infinity;
    for (let k = 0; k < T; k++)
      max = Math.max(max, (logW[k] = clusterOf[k] < 0 ? -Infinity : (spec.covariateModel ? logW[k] : 0) + lnPi[k]));
    let total = 0;
    for (let k = 0; k < T; k++) total += logW[k] = Math.exp(logW[k] - max);
    const u = batch.u.subarray(row * P, (row + 1) * P);
    let m1 = 0, m2 = 0, best = -1;
    for (let k = 0; k < T; k++) {
      const w = logW[k] / total;
      if (w === 0) continue;
      if (clusterOf[k] >= 0 && (best < 0 || w > logW[best] / total)) best = k;
      let mu = 0;
      for (let i = 0; i < P; i++) mu += d.coef[k * P + i] * u[i];
      const spread = quadraticForm(d.coefCovariance.subarray(k * P * P, (k + 1) * P * P), P, u);
      if (spec.family === 'gaussian') {
        const a = d.noiseShape[k], b = d.noiseRate[k];
        const dof = 2 * a;
        const variance = (b / a) * (1 + spread) * (dof > 2 ? dof / (dof - 2) : Infinity);
        m1 += w * mu;
        m2 += w * (variance + mu * mu);
      } else {
        const kappa = 1 / Math.sqrt(1 + (Math.PI * spread) / 8); // PRML 4.154
        m1 += w / (1 + Math.exp(-kappa * mu));
      }
    }
    out.cluster[row] = best < 0 ? -1 : clusterOf[best];
    out.clusterProbability[row] = best < 0 ? 0 : logW[best] / total;
    if (spec.family === 'gaussian') {
      out.mean[row] = std.yMean + std.ySd * m1;
      out.sd![row] = std.ySd * Math.sqrt(Math.max(0, m2 - m1 * m1));
    } else out.mean[row] = m1;
  }
  return out;
}

