/**
 * The posterior document (result/posterior.json): every number in the data's own units, plus the
 * state that predict and warm starts need. One converter from the standardized scale, used by
 * the local CLI and the AWS aggregator alike.
 */
import type { ModelConfig } from '../config.js';
import { levelNames, type ColumnPlan, type Standardization } from '../data/dataset.js';
import { covariateFactorsOf } from './covariates/index.js';
import { encodeFloat64, decodeFloat64 } from '../pipeline/protocol.js';
import { expectedLogJoint } from '../inference/moves.js';
import type { CovariateRelevance } from '../inference/relevance.js';
import { LN_2PI } from '../math/special.js';
import { familyOf } from './families/index.js';
import { derive, weightedScatter, type Derived, type GammaParams, type GlobalState } from './posterior.js';
import type { SharedPosterior } from './families/shared.js';
import { layoutOf, priorCoordinates, specOfPlan, type ModelSpec } from './spec.js';

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
  /**
   * Per regression column, in the order of regressionColumns. A shared column's entry is the shared
   * slope (PosteriorDocument.shared, where it is reported once): the array keeps its meaning, the
   * component's whole regression, for readers that do not know `shared` (docs/library.md).
   */
  coefficients: number[];
  interceptSd: number;
  coefficientSd: number[];
  /** sqrt(E[1/τ_k]) = sqrt(b_k / (a_k − 1)) in data units (gaussian only). */
  noiseSd?: number;
  /** E[φ_kjl]: per categorical clustering column, each level's probability (lib/model/covariates/categorical.ts). */
  categories?: Record<string, Record<string, number>>;
  /**
   * A categorical target (multinomial): each non-reference class's regression, log-odds against the
   * reference class (the first sorted label), in data units. `intercept` and `coefficients` above are
   * the first of these.
   */
  classes?: ClassRegression[];
}

/** One class's linear predictor against the reference class (multinomial), in data units. */
export interface ClassRegression {
  class: string;
  intercept: number;
  coefficients: number[];
  interceptSd: number;
  coefficientSd: number[];
}

/** Shared slopes in data units: E[β_j] s_y / s_j and its marginal posterior sd. */
export interface SharedSummary {
  columns: string[];
  coefficients: number[];
  coefficientSd: number[];
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
  /** Missing covariate values by column, marginalized rather than skipped (docs/model.md §18); absent: none. */
  missingValues?: Record<string, number>;
  /** ELBO in the data's units: the standardized-scale bound minus N Σ ln(deviation) (the Jacobian). */
  elbo: number;
  converged: boolean;
  components: ComponentSummary[];
  /** The slopes common to every component (config sharedCoefficients; docs/model.md §15), reported once. */
  shared?: SharedSummary;
  /** Concentration: E[α] for stick-breaking. */
  concentration?: number;
  /** Each candidate clustering column's relevance, when the run chose x among them (docs/model.md §13). */
  covariateRelevance?: CovariateRelevance[];
  state: {
    config: ModelConfig;
    plan: ColumnPlan;
    standardization: Standardization;
    lambda: string;
    alpha: GammaParams | null;
  };
}

/**
 * Information criteria in data units (docs/model.md §12), for the reported components: with
 * plug-in parameters π̂ = E[π], μ̂ = m, Λ̂ = E[Λ] = ν W, θ̂, τ̂ = E[τ] = a/b and the fit's
 * responsibilities r,
 *   CLL = Σ_n Σ_k r_nk ln(π̂_k N(x_n | μ̂_k, Λ̂_k⁻¹) N(y_n | θ̂_kᵀu_n, τ̂_k⁻¹))  (from the statistics),
 *   H   = −Σ r ln r = ELBO − J(S)  (moves.ts expectedLogJoint),
 *   ln L̂ ≥ CLL + H  (Jensen; equality when r is the plug-in membership),
 *   BIC = −2 ln L̂ + ν ln N,  ICL = BIC + 2H = −2 CLL + ν ln N  (Biernacki et al. 2000),
 * ν = (K − 1) + K (D + D(D+1)/2 + P + 1) free parameters for K reported components; with S shared
 * slopes, P − S + 1 per component and S once.
 */
export interface Criteria {
  /** The plug-in log-likelihood ln L̂, as the bound CLL + H. */
  logLikelihood: number;
  /** CLL: the expected complete-data log-likelihood at the plug-in parameters. */
  completeLogLikelihood: number;
  /** H: the entropy of q(z), in nats. */
  entropy: number;
  /** ν: free parameters of the reported components. */
  parameters: number;
  bic: number;
  icl: number;
}

/**
 * The criteria of `state` (whose λ = λ0 + S was formed from the statistics S of the sweep before)
 * given its standardized ELBO; data units through `logJacobian` (per row, logJacobianPerRow, of N
 * rows). With missing covariate cells (docs/model.md §18) the statistics are those of the completed
 * data, so CLL is the completed rows' (every cell's Jacobian), while the entropy, q(x_m)'s included,
 * takes back the Jacobian of the missing cells (`missingJacobian`, Σ over them of ln s_j): ln L̂ is
 * a bound on the observed values' likelihood, like the ELBO. Only for a response family whose
 * plug-in likelihood the statistics give (`plugIn`: gaussian).
 */
export function informationCriteria(spec: ModelSpec, state: GlobalState, elboStandardized: number, rows: number, logJacobian: number, missingJacobian = 0): Criteria | undefined {
  const plugIn = familyOf(spec.family).plugIn;
  if (!plugIn || !Number.isFinite(elboStandardized)) return undefined;
  const { T, D, P } = spec;
  const d = derive(spec, state);
  const layout = layoutOf(spec);
  const lambda0 = priorCoordinates(spec);
  const stats = state.lambda.map((v, i) => v - lambda0[i]);
  let cll = 0;
  for (let k = 0; k < T; k++) {
    const n = stats[layout.count + k];
    if (n <= 0) continue;
    cll += n * Math.log(d.ePi[k]);
    if (spec.covariateModel && D > 0) {
      const precision = d.wishart.slice(k * D * D, (k + 1) * D * D).map((w) => w * d.nu[k]);
      const m = d.mean.subarray(k * D, (k + 1) * D);
      const sx = stats.subarray(layout.sx + k * D, layout.sx + (k + 1) * D);
      const sxx = stats.subarray(layout.sxx + k * D * D, layout.sxx + (k + 1) * D * D);
      const lnDet = d.lnDetW[k] + D * Math.log(d.nu[k]);
      cll += n * (0.5 * lnDet - (D / 2) * LN_2PI) - 0.5 * weightedScatter(precision, D, m, n, sx, sxx);
    }
    for (const factor of covariateFactorsOf(spec)) cll += factor.plugIn.logLik(spec, state.lambda, layout, stats, k);
    cll += plugIn.logLik(d, stats, k);
  }
  const entropy = Math.max(0, elboStandardized - expectedLogJoint(spec, state, stats));
  const K = reportedComponents(d).length;
  const S = spec.shared?.length ?? 0;
  const factorParameters = covariateFactorsOf(spec).reduce((s, f) => s + f.plugIn.parameters(spec), 0);
  const parameters = K - 1 + K * ((spec.covariateModel ? D + (D * (D + 1)) / 2 : 0) + factorParameters + plugIn.parameters(P - S)) + S;
  const completeLogLikelihood = cll - rows * logJacobian;
  const logLikelihood = completeLogLikelihood + entropy + missingJacobian;
  const penalty = parameters * Math.log(rows);
  return {
    logLikelihood,
    completeLogLikelihood,
    entropy,
    parameters,
    bic: -2 * logLikelihood + penalty,
    icl: -2 * completeLogLikelihood + penalty,
  };
}

/**
 * What `summarize` returns: the document plus `criteria`, model comparison from the plug-in
 * likelihood at the posterior means (docs/model.md §12; gaussian response only; absent without a
 * batch-sweep ELBO; lower BIC / ICL is better). `criteria` is not yet in lib/schemas.ts
 * PosteriorSchema, whose compile-time check mirrors PosteriorDocument; once the schema has it, it
 * belongs in PosteriorDocument.
 */
export type SummarizedPosterior = PosteriorDocument & { criteria?: Criteria };

/** ln of the Jacobian from data units to the standardized scale, per row. */
export function logJacobianPerRow(spec: ModelSpec, std: Standardization): number {
  let s = familyOf(spec.family).target.standardized ? Math.log(std.ySd) : 0;
  if (spec.covariateModel) for (const sd of std.xSd) s += Math.log(sd);
  return s;
}

/**
 * The ELBO's whole log-Jacobian, N · logJacobianPerRow less the ln s_j of every missing numeric
 * covariate (a row's bound is a density of its observed values only; docs/model.md §18).
 */
export function logJacobian(spec: ModelSpec, std: Standardization, plan: Pick<ColumnPlan, 'x'>, rows: number, missing: Record<string, number> = {}): number {
  return rows * logJacobianPerRow(spec, std) - missingLogJacobian(spec, std, plan, missing);
}

/** Σ ln s_j over the missing numeric covariate cells (the part of the Jacobian their rows lack). */
export function missingLogJacobian(spec: ModelSpec, std: Standardization, plan: Pick<ColumnPlan, 'x'>, missing: Record<string, number> = {}): number {
  let s = 0;
  if (spec.covariateModel) plan.x.forEach((column, j) => (s += (missing[column] ?? 0) * Math.log(std.xSd[j])));
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

/**
 * θ (P) with covariance scale · Σ (P, P) on the standardized scale, mapped to data units by
 * coefficientMap (value = A θ + c; variance = diag(A Σ Aᵀ) · scale): slopes first, the intercept last.
 */
function inDataUnits(theta: ArrayLike<number>, cov: Float64Array, scale: number, a: Float64Array, c: Float64Array, P: number) {
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
  return {
    coefficients: Array.from(value.subarray(0, P - 1)),
    intercept: value[P - 1],
    coefficientSd: Array.from(variance.subarray(0, P - 1), Math.sqrt),
    interceptSd: Math.sqrt(variance[P - 1]),
  };
}

function componentSummary(derived: Derived, k: number, std: Standardization, plan: ColumnPlan): ComponentSummary {
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
  // Marginal covariance of θ: Λ⁻¹ times the family's scale (gaussian: b/(a − 1), a Student-t marginal).
  const family = familyOf(spec.family);
  const scale = family.coefficientScale?.(derived, k) ?? 1;
  const { a, c } = coefficientMap(std, P);
  // A family with several linear predictors (multinomial: one per non-reference class) reports each;
  // the component's own intercept and coefficients are the first one's.
  const heads = family.heads?.(derived, k);
  const theta = heads ? heads[0].coef : derived.coef.subarray(k * P, (k + 1) * P);
  const cov = heads ? heads[0].covariance : derived.coefCovariance.slice(k * P * P, (k + 1) * P * P);
  // Shared slopes: their block is Cov[β] itself (the gaussian's spread matrix holds E[τ_k] Cov[β],
  // which the Student-t scale would not undo; families/gaussian.ts).
  const shared = derived.shared;
  if (shared) shared.index.forEach((i, si) => shared.index.forEach((j, sj) => (cov[i * P + j] = shared.covariance[si * shared.index.length + sj] / scale)));
  Object.assign(out, inDataUnits(theta, cov, scale, a, c, P));
  if (heads) {
    const labels = plan.select[plan.ySlot].levels ?? [];
    out.classes = heads.map((head, j) => ({ class: labels[j + 1], ...inDataUnits(head.coef, head.covariance, scale, a, c, P) }));
  }
  family.summarize?.(derived, k, std, out);
  for (const factor of covariateFactorsOf(spec)) out.categories = { ...out.categories, ...factor.summary(spec, derived.lambda, derived.layout, k, levelNames(plan)) };
  return out;
}

/** β in data units (the map of coefficientMap restricted to the shared slopes: s_y / s_j). */
function sharedSummary(shared: SharedPosterior, r: readonly string[], std: Standardization): SharedSummary {
  const S = shared.index.length;
  return {
    columns: shared.index.map((j) => r[j]),
    coefficients: shared.index.map((j, a) => (std.ySd / std.rSd[j]) * shared.mean[a]),
    coefficientSd: shared.index.map((j, a) => (std.ySd / std.rSd[j]) * Math.sqrt(shared.covariance[a * S + a])),
  };
}

/**
 * The regression columns whose slopes are each component's own (every one but the shared), with
 * their positions in regressionColumns (and so in components[].coefficients).
 */
export function ownRegressionColumns(doc: Pick<PosteriorDocument, 'regressionColumns' | 'shared'>): { column: string; j: number }[] {
  return doc.regressionColumns.flatMap((column, j) => (doc.shared?.columns.includes(column) ? [] : [{ column, j }]));
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
  /** Missing values by column, marginalized (docs/model.md §18); absent: none. */
  missingValues?: Record<string, number>;
  elboStandardized: number;
  converged: boolean;
}): SummarizedPosterior {
  const { config, plan, standardization: std, state } = input;
  const spec = specOfPlan(config, plan);
  const derived = derive(spec, state);
  const criteria = informationCriteria(spec, state, input.elboStandardized, input.rows, logJacobianPerRow(spec, std), missingLogJacobian(spec, std, plan, input.missingValues));
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
    ...(input.missingValues ? { missingValues: input.missingValues } : {}),
    elbo: input.elboStandardized - logJacobian(spec, std, plan, input.rows, input.missingValues),
    converged: input.converged,
    components: reportedComponents(derived).map((k) => componentSummary(derived, k, std, plan)),
    ...(derived.shared ? { shared: sharedSummary(derived.shared, plan.r, std) } : {}),
    ...(config.weights === 'stick-breaking' ? { concentration: derived.eAlpha } : {}),
    ...(plan.relevance ? { covariateRelevance: plan.relevance } : {}),
    ...(criteria ? { criteria } : {}),
    state: { config, plan, standardization: std, lambda: encodeFloat64(state.lambda), alpha: state.alpha },
  };
}

/** The model inside a posterior document, ready for derive(). */
export function modelOf(doc: PosteriorDocument): { spec: ModelSpec; state: GlobalState } {
  const { config, plan } = doc.state;
  return {
    spec: specOfPlan(config, plan),
    state: { lambda: decodeFloat64(doc.state.lambda), alpha: doc.state.alpha },
  };
}
