/**
 * The posterior document (result/posterior.json): every number in the data's own units, plus the
 * state that predict and warm starts need. One converter from the standardized scale, used by
 * the local CLI and the AWS aggregator alike.
 */
import type { ModelConfig } from '../config.js';
import type { ColumnPlan, Standardization } from '../data/dataset.js';
import { encodeFloat64, decodeFloat64 } from '../pipeline/protocol.js';
import { derive, type Derived, type GammaParams, type GlobalState } from './posterior.js';
import { specFromConfig, type ModelSpec } from './spec.js';

export interface ComponentSummary {
  /** Index of the component in the state (its position in λ). */
  id: number;
  /** E[π_k]. */
  weight: number;
  /** N_k, the expected number of rows. */
  size: number;
  /** E[μ_k] in data units (absent when conditional-only). */
  mean?: number[];
  /** E[Σ_k] = W_k⁻¹ / (ν_k − D − 1) in data units (absent when conditional-only). */
  covariance?: number[][];
  intercept: number;
  coefficients: number[];
  interceptSd: number;
  coefficientSd: number[];
  /** sqrt(E[1/τ_k]) = sqrt(b_k / (a_k − 1)) in data units (gaussian only). */
  noiseSd?: number;
}

export interface PosteriorDocument {
  format: 'clusterwise/posterior@1';
  dataset: string;
  runId: string;
  family: ModelConfig['family'];
  target: string;
  columns: string[];
  regressionColumns: string[];
  weights: ModelConfig['weights'];
  covariateModel: boolean;
  rows: number;
  skippedRows: number;
  /** ELBO in the data's units: the standardized-scale bound minus N Σ ln(deviation) (the Jacobian). */
  elbo: number;
  converged: boolean;
  components: ComponentSummary[];
  /** Concentration: E[α] for stick-breaking. */
  concentration?: number;
  state: {
    config: ModelConfig;
    plan: ColumnPlan;
    standardization: Standardization;
    lambda: string;
    alpha: GammaParams | null;
  };
}

/** ln of the Jacobian from data units to the standardized scale, per row. */
export function logJacobianPerRow(spec: ModelSpec, std: Standardization): number {
  let s = spec.family === 'gaussian' ? Math.log(std.ySd) : 0;
  if (spec.covariateModel) for (const sd of std.xSd) s += Math.log(sd);
  return s;
}

/** Components expected to hold at least one row, by weight descending. */
export function reportedComponents(derived: Derived): number[] {
  return Array.from({ length: derived.spec.T }, (_, k) => k)
    .filter((k) => derived.count[k] >= 1)
    .sort((a, b) => derived.ePi[b] - derived.ePi[a]);
}

/** For each component, its position in the report (−1: left out). */
export function clusterNumbers(derived: Derived): number[] {
  const out = new Array<number>(derived.spec.T).fill(-1);
  reportedComponents(derived).forEach((k, i) => (out[k] = i));
  return out;
}

/**
 * θ in data units: y = ȳ + s_y (θ_0 + Σ_j θ_j (r_j − r̄_j)/s_j), so coef_j = s_y θ_j / s_j and
 * intercept = ȳ + s_y (θ_0 − Σ_j θ_j r̄_j / s_j). A is the linear map, c the offset.
 */
function coefficientMap(std: Standardization, P: number): { a: Float64Array; c: Float64Array } {
  const a = new Float64Array(P * P); // rows: [coef_1..coef_{P−1}, intercept]
  const c = new Float64Array(P);
  for (let j = 0; j < P - 1; j++) {
    a[j * P + j] = std.ySd / std.rSd[j];
    a[(P - 1) * P + j] = (-std.ySd * std.rMean[j]) / std.rSd[j];
  }
  a[(P - 1) * P + P - 1] = std.ySd;
  c[P - 1] = std.yMean;
  return { a, c };
}

function componentSummary(derived: Derived, k: number, std: Standardization): ComponentSummary {
  const { spec } = derived;
  const { D, P } = spec;
  const out: ComponentSummary = {
    id: k,
    weight: derived.ePi[k],
    size: derived.count[k],
    intercept: 0,
    coefficients: [],
    interceptSd: 0,
    coefficientSd: [],
  };
  if (spec.covariateModel) {
    out.mean = Array.from({ length: D }, (_, i) => std.xMean[i] + std.xSd[i] * derived.mean[k * D + i]);
    const dof = derived.nu[k] - D - 1;
    out.covariance = Array.from({ length: D }, (_, i) =>
      Array.from({ length: D }, (_, j) =>
        dof > 0 ? (std.xSd[i] * std.xSd[j] * derived.wishartInverse[k * D * D + i * D + j]) / dof : NaN,
      ),
    );
  }
  // Marginal covariance of θ: Λ⁻¹ b/(a − 1) (gaussian, Student-t marginal) or Λ⁻¹ (bernoulli).
  const gaussian = spec.family === 'gaussian';
  const scale = gaussian ? derived.noiseRate[k] / Math.max(derived.noiseShape[k] - 1, 1e-12) : 1;
  const { a, c } = coefficientMap(std, P);
  const theta = derived.coef.subarray(k * P, (k + 1) * P);
  const cov = derived.coefCovariance.subarray(k * P * P, (k + 1) * P * P);
  const value = new Float64Array(P);
  const variance = new Float64Array(P);
  for (let i = 0; i < P; i++) {
    let v = c[i];
    for (let j = 0; j < P; j++) v += a[i * P + j] * theta[j];
    value[i] = v;
    let s = 0; // (A Σ Aᵀ)_ii
    for (let j = 0; j < P; j++) for (let l = 0; l < P; l++) s += a[i * P + j] * cov[j * P + l] * a[i * P + l];
    variance[i] = s * scale;
  }
  out.coefficients = Array.from(value.subarray(0, P - 1));
  out.intercept = value[P - 1];
  out.coefficientSd = Array.from(variance.subarray(0, P - 1), Math.sqrt);
  out.interceptSd = Math.sqrt(variance[P - 1]);
  if (gaussian) out.noiseSd = std.ySd * Math.sqrt(scale);
  return out;
}

export function summarize(input: {
  dataset: string;
  runId: string;
  config: ModelConfig;
  plan: ColumnPlan;
  standardization: Standardization;
  state: GlobalState;
  rows: number;
  skippedRows: number;
  elboStandardized: number;
  converged: boolean;
}): PosteriorDocument {
  const { config, plan, standardization: std, state } = input;
  const spec = specFromConfig(config, plan.x.length, plan.r.length + 1);
  const derived = derive(spec, state);
  return {
    format: 'clusterwise/posterior@1',
    dataset: input.dataset,
    runId: input.runId,
    family: config.family,
    target: plan.target,
    columns: plan.x,
    regressionColumns: plan.r,
    weights: config.weights,
    covariateModel: config.covariateModel,
    rows: input.rows,
    skippedRows: input.skippedRows,
    elbo: input.elboStandardized - input.rows * logJacobianPerRow(spec, std),
    converged: input.converged,
    components: reportedComponents(derived).map((k) => componentSummary(derived, k, std)),
    ...(config.weights === 'stick-breaking' ? { concentration: derived.eAlpha } : {}),
    state: { config, plan, standardization: std, lambda: encodeFloat64(state.lambda), alpha: state.alpha },
  };
}

/** The model inside a posterior document, ready for derive(). */
export function modelOf(doc: PosteriorDocument): { spec: ModelSpec; state: GlobalState } {
  const { config, plan } = doc.state;
  return {
    spec: specFromConfig(config, plan.x.length, plan.r.length + 1),
    state: { lambda: decodeFloat64(doc.state.lambda), alpha: doc.state.alpha },
  };
}
