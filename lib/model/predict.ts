/**
 * Predictions from a posterior document for new rows: cluster membership p(z | x) from the
 * covariate model's Student-t predictive (PRML 10.81) or the mixing weights when conditional-only,
 * and the response from each component's predictive (Student-t for gaussian, the probit-style
 * approximation of the logistic predictive, PRML 4.153, for bernoulli), mixed by p(z | x) over
 * the components posterior.json reports (docs/model.md §10).
 *
 * The per-row cost is two quadratic forms per component, both sums of squares of a product of
 * the row with a fixed matrix (Cholesky factors prepared once per model):
 *
 *   δ²_k    = s_k (x − m_k)ᵀ W_k (x − m_k) = ‖[x, 1] F_k‖²,  F_k = √s_k [R_k; −m_kᵀ R_k], W_k = R_k R_kᵀ
 *   spread_k = uᵀ Λ_k⁻¹ u                  = ‖u C_k‖²,       Λ_k⁻¹ = C_k C_kᵀ
 *
 * with s_k = (ν_k + 1 − D) β_k / (1 + β_k). For all components at once these are two matrix
 * products, [x, 1]·[F_1 … F_K] and u·[C_1 … C_K], which TensorFlow.js runs in float32 (the
 * `Predictor` with a tfjs backend); the float64 loops below are the reference and the fallback.
 * Everything else (means θ_kᵀu, the mixture, the Student-t constants) is float64 on the host: a
 * float32 error in δ² or the spread moves a weight or a deviation by ~1e-7 relative, below what
 * is printed, while the mean is printed to 8 digits. A row with missing covariates is scored on its
 * own, in float64 (Predictor#missingRow; docs/model.md §18).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ModelConfigSchema } from '../config.js';
import { CategoricalPlanSchema, SelectedColumnSchema } from '../schemas.js';
import { Scratch } from '../data/scratch.js';
import { ClusterwiseError } from '../errors.js';
import { DataError } from '../data/errors.js';
import type { Batch } from '../kernel/types.js';
import type { Predictive } from './families/family.js';
import { activateBackend, type TfjsBackendName } from '../kernel/tfjs.js';
import { backSubstitute, cholesky, forwardSubstitute, logDetFromCholesky } from '../math/linalg.js';
import { rowsWithMissing } from '../kernel/batch.js';
import { productRule } from '../math/quadrature.js';
import { lnGamma } from '../math/special.js';
import { decodeFloat64 } from '../pipeline/protocol.js';
import { FAMILY_NAMES, familyOf } from './families/index.js';
import { noiseOf } from './families/gaussian.js';
import { covariateFactorsOf } from './covariates/index.js';
import { derive } from './posterior.js';
import {
  logSumExp,
  mixtureLogDensity,
  mixtureQuantile,
  studentTLogDensity,
  studentTLogNormalizer,
  studentTQuantile,
  type StudentTMixture,
} from './predictive.js';
import { layoutOf, specOfPlan } from './spec.js';
import { modelOf, reportedComponents, type PosteriorDocument } from './summary.js';

export interface Prediction {
  /** Reported cluster number (position in posterior.json's components), −1 if none. */
  cluster: Int32Array;
  clusterProbability: Float64Array;
  /** Gaussian: predictive mean and sd of y in data units. Bernoulli: P(y = 1). */
  mean: Float64Array;
  sd?: Float64Array;
  /** With `interval`: the central interval of the mixture predictive, in data units (gaussian). */
  lo?: Float64Array;
  hi?: Float64Array;
  /** With `logDensity`: ln p(y | x) of the row's target in data units (NaN where y is missing). */
  logDensity?: Float64Array;
  /** A categorical target (multinomial): p(y = c | x) of each class, n × C; `mean` holds the most probable class's index. */
  probabilities?: Float64Array;
}

/** What a Predictor adds to the mean and sd. */
export interface PredictOptions {
  /** Central probability of [lo, hi], in (0, 1): quantiles (1 ∓ interval)/2 of the mixture predictive. */
  interval?: number;
  /** ln p(y | x) per row from batch.y (missing y: NaN). */
  logDensity?: boolean;
  /** cluster and clusterProbability from p(z | x, y) where batch.y is known (flexmix's clusters(newdata)). */
  clusterGivenY?: boolean;
}

// ---------------------------------------------------------------------------------------------
// posterior.json as predict reads it
// ---------------------------------------------------------------------------------------------

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const columns = z.array(z.string());
const slots = z.array(z.number().int().min(0));

/** The parts of posterior.json predict relies on (the rest is for people and is not checked). */
const PosteriorForPredict = z.object({
  format: z.literal('clusterwise/posterior@1'),
  family: z.enum(FAMILY_NAMES),
  target: z.string(),
  columns,
  regressionColumns: columns,
  covariateModel: z.boolean(),
  state: z.object({
    config: ModelConfigSchema,
    plan: z.object({
      target: z.string(),
      x: columns,
      r: columns,
      select: z.array(SelectedColumnSchema),
      xSlot: slots,
      rSlot: slots,
      ySlot: z.number().int(),
      ...CategoricalPlanSchema,
      offset: z.object({ column: z.string(), slot: z.number().int().min(0), log: z.boolean() }).optional(),
    }),
    standardization: z.object({
      xMean: z.array(finite),
      xSd: z.array(finite.refine((v) => v > 0, 'must be positive')),
      rMean: z.array(finite),
      rSd: z.array(finite.refine((v) => v > 0, 'must be positive')),
      yMean: finite,
      ySd: finite.refine((v) => v > 0, 'must be positive'),
    }),
    lambda: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64'),
    alpha: z.object({ shape: finite, rate: finite }).nullable(),
  }),
});

/** A posterior.json that cannot be used (a DataError about that file); the message names the file. */
export class PosteriorFileError extends DataError {
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(problem, { file }, options);
    this.name = 'PosteriorFileError';
  }
}

/**
 * Parses and checks a posterior.json: its shape (the schema above), and that its parts agree
 * with each other — the family and columns shown at the top are the ones the state was fitted
 * with, the standardization has one entry per column, and λ has the length of the model's
 * layout and finite values. An edited or truncated file is an error naming `file`, never a
 * silently different prediction.
 */
export function readPosterior(text: string, file: string): PosteriorDocument {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PosteriorFileError(file, `not valid JSON (${(error as Error).message}); give the posterior.json that fit wrote`, { cause: error });
  }
  const parsed = PosteriorForPredict.safeParse(json);
  if (!parsed.success) {
    const format = (json as { format?: unknown } | null)?.format;
    if (format !== 'clusterwise/posterior@1')
      throw new PosteriorFileError(file, `not a clusterwise posterior (format ${JSON.stringify(format) ?? 'missing'}); give the posterior.json that fit wrote`);
    const problems = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new PosteriorFileError(file, `invalid posterior: ${problems.join('; ')}`);
  }
  const doc = parsed.data;
  const { config, plan, standardization: std } = doc.state;
  const disagree = (what: string) => {
    throw new PosteriorFileError(file, `invalid posterior: ${what} (the file was edited or is damaged)`);
  };
  if (doc.family !== config.family) disagree(`family "${doc.family}" but the state was fitted as "${config.family}"`);
  if (doc.covariateModel !== config.covariateModel) disagree('covariateModel differs from the state\'s');
  if (doc.target !== plan.target || JSON.stringify(doc.columns) !== JSON.stringify(plan.x) || JSON.stringify(doc.regressionColumns) !== JSON.stringify(plan.r))
    disagree('target or columns differ from the state\'s');
  if (std.xMean.length !== plan.x.length || std.xSd.length !== plan.x.length || std.rMean.length !== plan.r.length || std.rSd.length !== plan.r.length)
    disagree('the standardization does not match the columns');
  if (plan.xSlot.length !== plan.x.length || plan.rSlot.length !== plan.r.length || [...plan.xSlot, ...plan.rSlot].some((s) => s >= plan.select.length))
    disagree('the column plan is inconsistent');
  if (
    (plan.xcSlot ?? []).some((s) => s >= plan.select.length || !plan.select[s].levels) ||
    plan.xcSlot?.length !== plan.xc?.length ||
    (plan.rLevel && (plan.rLevel.length !== plan.r.length || plan.rLevel.some((l, j) => l >= (plan.select[plan.rSlot[j]].levels?.length ?? 0))))
  )
    disagree('the categorical columns are inconsistent');
  const spec = specOfPlan(config, plan);
  const bytes = Buffer.byteLength(doc.state.lambda, 'base64');
  if (bytes % 8 !== 0) disagree(`state.lambda is ${bytes} bytes, not whole float64 numbers`);
  const lambda = decodeFloat64(doc.state.lambda);
  if (lambda.length !== layoutOf(spec).length) disagree(`state.lambda holds ${lambda.length} numbers, the model needs ${layoutOf(spec).length}`);
  if (!lambda.every(Number.isFinite)) disagree('state.lambda holds a non-finite number');
  // The syy block is the family's own (gaussian: c_k = 2 b_k + …, positive; bernoulli: unused, 0).
  const layout = layoutOf(spec);
  const family = familyOf(config.family);
  if (!family.validExtra(lambda.subarray(layout.syy, layout.syy + spec.T * family.extraWidth(spec))))
    disagree(`state.lambda is not the state of a ${config.family} model`);
  return json as PosteriorDocument;
}

// ---------------------------------------------------------------------------------------------
// The model, prepared once
// ---------------------------------------------------------------------------------------------

/** Per reported component (k = 0 … K−1, the posterior.json numbering), everything a row needs. */
interface PreparedModel {
  gaussian: boolean;
  covariateModel: boolean;
  K: number;
  D: number;
  P: number;
  /** ln E[π_k] (+ the Student-t normalizer when the covariate model is on). */
  constant: Float64Array;
  /**
   * For rows with missing covariates (docs/model.md §18): ln E[π_k], m_k (K × D), the Student-t's
   * scale matrix Σ_k = (s_k W_k)⁻¹ (K × D × D) and dof_k, spec.covariateInputs, and what a
   * variance of η adds to the spread uᵀΛ_k⁻¹u: 1 / the family's coefficientScale (θ_k's marginal
   * covariance is coefficientScale · Λ_k⁻¹).
   */
  marginal: { logWeight: Float64Array; mean: Float64Array; scale: Float64Array; dof: Float64Array; inputs: readonly number[]; spreadPerVariance: Float64Array };
  /**
   * The covariate factors' ln p(x_n | k) of a row (categorical: Σ_j ln(α_kj,x / Σ_l α_kjl)),
   * added to `constant` per row into out (K), or null without such factors (lib/model/covariates/).
   */
  factorTerms: ((codes: Int32Array, at: number, out: Float64Array) => void) | null;
  /** (dof_k + D)/2 and 1/dof_k of the covariate Student-t. */
  halfPower: Float64Array;
  inverseDof: Float64Array;
  /** [F_1 … F_K], (D + 1) × K·D row-major (module comment). */
  covariateFactor: Float64Array;
  /** [C_1 … C_K], P × K·P row-major. */
  spreadFactor: Float64Array;
  /** θ_k, K × P. */
  coef: Float64Array;
  /** The family's predictive: mean, sd, columns (families/family.ts Predictive). */
  predictive: Predictive;
  /** Its per-component constant (gaussian: (b_k/a_k) · dof/(dof − 2) of the noise Student-t, ∞ when 2a_k ≤ 2). */
  familyConstant: Float64Array;
  /** Its per-component parameters (Predictive.parameters; empty arrays when it has none). */
  familyParameters: Float64Array[];
  /** Values the predictive accumulates per row: 2 moments, or C class probabilities (Predictive.classes). */
  accumulated: number;
  std: PosteriorDocument['state']['standardization'];
  /** Gaussian: b_k/a_k, the noise Student-t's scale², its dof 2a_k and ln normalizer. */
  noiseScale2: Float64Array;
  noiseDof: Float64Array;
  noiseLogNormalizer: Float64Array;
  yMean: number;
  ySd: number;
}

function prepareModel(doc: PosteriorDocument): PreparedModel {
  const { spec, state } = modelOf(doc);
  const d = derive(spec, state);
  const { D, P } = spec;
  const components = reportedComponents(d);
  const K = components.length;
  // Only the reported components (expected to hold ≥ 1 row) take part, renormalized: an empty
  // component keeps its vague prior, whose Student-t has no finite variance (2a ≤ 2).
  const model: PreparedModel = {
    gaussian: spec.family === 'gaussian',
    covariateModel: spec.covariateModel,
    K,
    D,
    P,
    constant: new Float64Array(K),
    marginal: {
      logWeight: new Float64Array(K),
      mean: new Float64Array(K * D),
      scale: new Float64Array(K * D * D),
      dof: new Float64Array(K),
      inputs: spec.covariateInputs ?? [],
      spreadPerVariance: new Float64Array(K),
    },
    factorTerms: null,
    halfPower: new Float64Array(K),
    inverseDof: new Float64Array(K),
    covariateFactor: new Float64Array((D + 1) * K * D),
    spreadFactor: new Float64Array(P * K * P),
    coef: new Float64Array(K * P),
    predictive: familyOf(spec.family).predictive,
    familyConstant: new Float64Array(K),
    familyParameters: [],
    accumulated: familyOf(spec.family).predictive.classes ? spec.classes! : 2,
    std: doc.state.standardization,
    noiseScale2: new Float64Array(K),
    noiseDof: new Float64Array(K),
    noiseLogNormalizer: new Float64Array(K),
    yMean: doc.state.standardization.yMean,
    ySd: doc.state.standardization.ySd,
  };
  const factors = covariateFactorsOf(spec);
  if (factors.length > 0) {
    model.factorTerms = (codes, at, out) => {
      components.forEach((c, k) => {
        let s = 0;
        for (const factor of factors) s += factor.logPredictive(spec, state.lambda, d.layout, c, codes, at);
        out[k] = s;
      });
    };
  }
  const width = K * D;
  components.forEach((c, k) => {
    model.constant[k] = Math.log(d.ePi[c]);
    model.marginal.logWeight[k] = model.constant[k];
    model.marginal.spreadPerVariance[k] = 1 / (familyOf(spec.family).coefficientScale?.(d, c) ?? 1);
    if (spec.covariateModel) {
      // ln St(x | m, L, dof), L = s W (PRML 10.81–10.82).
      const dof = d.nu[c] + 1 - D;
      const s = (dof * d.beta[c]) / (1 + d.beta[c]);
      model.marginal.mean.set(d.mean.subarray(c * D, (c + 1) * D), k * D);
      model.marginal.scale.set(d.wishartInverse.subarray(c * D * D, (c + 1) * D * D).map((v) => v / s), k * D * D);
      model.marginal.dof[k] = dof;
      model.constant[k] +=
        lnGamma((dof + D) / 2) - lnGamma(dof / 2) + 0.5 * (D * Math.log(s) + d.lnDetW[c]) - (D / 2) * Math.log(dof * Math.PI);
      model.halfPower[k] = (dof + D) / 2;
      model.inverseDof[k] = 1 / dof;
      const r = cholesky(d.wishart.slice(c * D * D, (c + 1) * D * D), D, `W of component ${c}`);
      const root = Math.sqrt(s);
      for (let j = 0; j < D; j++) {
        let shift = 0;
        for (let i = j; i < D; i++) {
          const f = root * r[i * D + j];
          model.covariateFactor[i * width + k * D + j] = f;
          shift -= d.mean[c * D + i] * f;
        }
        model.covariateFactor[D * width + k * D + j] = shift;
      }
    }
    const cov = cholesky(d.coefCovariance.slice(c * P * P, (c + 1) * P * P), P, `Λ⁻¹ of component ${c}`);
    for (let i = 0; i < P; i++) for (let j = 0; j <= i; j++) model.spreadFactor[i * K * P + k * P + j] = cov[i * P + j];
    model.coef.set(d.coef.subarray(c * P, (c + 1) * P), k * P);
    model.familyConstant[k] = model.predictive.constant(d, c);
    model.familyParameters[k] = model.predictive.parameters?.(d, c) ?? new Float64Array(0);
    if (model.gaussian) {
      const { shape: a, rate: b } = noiseOf(d, c);
      const dof = 2 * a;
      model.noiseScale2[k] = b / a;
      model.noiseDof[k] = dof;
      model.noiseLogNormalizer[k] = studentTLogNormalizer(dof);
    }
  });
  return model;
}

/** δ² (n × K, when the covariate model is on) and the spreads (n × K) of a batch. */
interface Quadratics {
  covariate: ArrayLike<number> | null;
  spread: ArrayLike<number>;
}

/** ‖a_row · B_k‖² for every row and block k: a (n × m), B (m × K·w), blocks of w columns. Float64. */
function blockSquares(a: Float64Array, n: number, m: number, b: Float64Array, K: number, w: number, lastRowOne: boolean): Float64Array {
  const out = new Float64Array(n * K);
  const width = K * w;
  const inner = lastRowOne ? m - 1 : m; // [x, 1]: the row's last entry is an implicit 1
  const v = new Float64Array(width);
  for (let row = 0; row < n; row++) {
    if (lastRowOne) v.set(b.subarray(inner * width, (inner + 1) * width));
    else v.fill(0);
    for (let i = 0; i < inner; i++) {
      const ai = a[row * inner + i];
      if (ai === 0) continue;
      const bi = i * width;
      for (let j = 0; j < width; j++) v[j] += ai * b[bi + j];
    }
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = k * w; j < (k + 1) * w; j++) s += v[j] * v[j];
      out[row * K + k] = s;
    }
  }
  return out;
}

function referenceQuadratics(model: PreparedModel, batch: Batch): Quadratics {
  const { K, D, P } = model;
  return {
    covariate: model.covariateModel ? blockSquares(batch.x, batch.n, D + 1, model.covariateFactor, K, D, true) : null,
    spread: blockSquares(batch.u, batch.n, P, model.spreadFactor, K, P, false),
  };
}

/** ln 1e18: components this far below a row's best in log weight are left out of its prediction (Predictor.predict). */
const FAR_LOG_WEIGHT = 41.5;

/** Rows per TensorFlow.js product: temporaries of ~ rows · K·max(D, P) floats. */
const TFJS_CHUNK_ROWS = 8192;

/** The same products in float32 on a TensorFlow.js backend; the factors stay on it as "weights". */
class TfjsQuadratics {
  private readonly covariateFactor: tf.Tensor2D | null;
  private readonly spreadFactor: tf.Tensor2D;

  constructor(
    private readonly backend: TfjsBackendName,
    private readonly model: PreparedModel,
  ) {
    activateBackend(backend);
    const { K, D, P } = model;
    this.covariateFactor = model.covariateModel ? tf.tensor2d(Float32Array.from(model.covariateFactor), [D + 1, K * D]) : null;
    this.spreadFactor = tf.tensor2d(Float32Array.from(model.spreadFactor), [P, K * P]);
  }

  compute(batch: Batch, arrays: Scratch): Quadratics {
    activateBackend(this.backend);
    const { K, D, P } = this.model;
    const n = batch.n;
    const covariate = this.covariateFactor ? arrays.float32('covariate', n * K) : null;
    const spread = arrays.float32('spread', n * K);
    for (let start = 0; start < n; start += TFJS_CHUNK_ROWS) {
      const c = Math.min(TFJS_CHUNK_ROWS, n - start);
      const blocks = (rows: Float32Array, width: number, factor: tf.Tensor2D, w: number) => {
        const sums = tf.tidy(() => tf.sum(tf.reshape(tf.square(tf.matMul(tf.tensor2d(rows, [c, width]), factor)), [c, K, w]), 2));
        try {
          return sums.dataSync() as Float32Array;
        } finally {
          sums.dispose(); // tidy keeps the tensor it returns
        }
      };
      if (covariate && this.covariateFactor) {
        const xa = arrays.float32('xa', c * (D + 1));
        for (let i = 0; i < c; i++) {
          for (let j = 0; j < D; j++) xa[i * (D + 1) + j] = batch.x[(start + i) * D + j];
          xa[i * (D + 1) + D] = 1;
        }
        covariate.set(blocks(xa, D + 1, this.covariateFactor, D), start * K);
      }
      const u = arrays.float32('u', c * P);
      u.set(batch.u.subarray(start * P, (start + c) * P));
      spread.set(blocks(u, P, this.spreadFactor, P), start * K);
    }
    return { covariate, spread };
  }

  dispose(): void {
    this.covariateFactor?.dispose();
    this.spreadFactor.dispose();
  }
}

/**
 * Scores batches against one posterior. With a TensorFlow.js backend (initialized by
 * lib/kernel/backend.ts loadKernel) the quadratic forms run there; without one, in float64.
 * The arrays of a Prediction are reused by the next call of `predict` (a chunk at a time).
 */
export class Predictor {
  private readonly model: PreparedModel;
  private readonly tfjs?: TfjsQuadratics;
  private readonly arrays = new Scratch();
  private readonly options: PredictOptions;
  /** t_ν_k⁻¹ at the interval's lower and upper probabilities, per component (gaussian). */
  private readonly unitLo?: Float64Array;
  private readonly unitHi?: Float64Array;
  /** The covariate factors' terms (n × K) of the batch being predicted, or null. */
  private levelTerms: Float64Array | null = null;
  /**
   * Rows of the current batch with a missing regression input, for a family whose predictive reads
   * u (its `parameters`; multinomial): the quadrature nodes of u under each component, the missing
   * inputs spread over their conditional distribution (K × N × P), and the nodes' weights (N).
   */
  private integratedInputs = new Map<number, { points: Float64Array; weights: Float64Array }>();

  constructor(doc: PosteriorDocument, backend?: TfjsBackendName, options: PredictOptions = {}) {
    checkPredictOptions(doc, options);
    this.model = prepareModel(doc);
    this.options = options;
    if (options.interval !== undefined) {
      const tail = (1 - options.interval) / 2;
      this.unitLo = this.model.noiseDof.map((dof) => studentTQuantile(tail, dof));
      this.unitHi = this.model.noiseDof.map((dof) => studentTQuantile(1 - tail, dof));
    }
    if (backend) this.tfjs = new TfjsQuadratics(backend, this.model);
  }

  /** The covariate factors' ln p(x_n | k), (n × K), from the batch's categorical codes. */
  private factorTermsOf(batch: Batch): Float64Array {
    const { K } = this.model;
    const n = batch.n;
    const out = this.arrays.float64('levelTerms', n * K);
    if (!batch.categories) throw new RangeError('predict: the model has categorical covariates; the batch has none');
    const J = batch.categories.length / Math.max(1, n);
    const row = new Float64Array(K);
    for (let i = 0; i < n; i++) {
      this.model.factorTerms!(batch.categories, i * J, row);
      out.set(row, i * K);
    }
    return out;
  }

  predict(batch: Batch): Prediction {
    const m = this.model;
    const { K, P } = m;
    const n = batch.n;
    const arrays = this.arrays;
    const q = this.tfjs ? this.tfjs.compute(batch, arrays) : referenceQuadratics(m, batch);
    const out: Prediction = {
      cluster: arrays.int32('cluster', n),
      clusterProbability: arrays.float64('clusterProbability', n),
      mean: arrays.float64('mean', n),
      ...(m.predictive.sd ? { sd: arrays.float64('sd', n) } : {}),
      ...(m.predictive.classes ? { probabilities: arrays.float64('probabilities', n * m.accumulated) } : {}),
    };
    // Locals rather than property reads in the loop over rows (the hot loop of predict).
    const { constant, halfPower, inverseDof, coef, familyConstant, familyParameters, std } = m;
    const { add, mean: meanOf, sd: sdOf } = m.predictive;
    const offsets = batch.offset;
    const moments = new Float64Array(m.accumulated);
    const covariate = q.covariate;
    const spreads = q.spread;
    const u = batch.u;
    const { cluster, clusterProbability, mean, sd, probabilities } = out;
    const w = new Float64Array(K);
    // The mixture beyond its mean and sd needs each row's log weights ln p(z=k | x) and component means (n × K).
    const keep = this.options.interval !== undefined || this.options.logDensity === true || this.options.clusterGivenY === true;
    const logWeights = keep ? arrays.float64('logWeights', n * K) : w;
    const locs = keep ? arrays.float64('locs', n * K) : w;
    // With keep, a component left out below keeps an upper bound on its log weight, flagged in `far`.
    const far = keep ? arrays.int32('far', n * K) : null;
    const bounds = new Float64Array(K);
    // Per-row constants: `constant` plus the covariate factors' terms when the model has any.
    const levelTerms = m.factorTerms ? this.factorTermsOf(batch) : null;
    this.levelTerms = levelTerms;
    const rowConstant = levelTerms ? new Float64Array(K) : constant;
    // Rows with a missing covariate: their own float64 path (missingRow), flagged once per batch.
    const incomplete = m.covariateModel ? rowsWithMissing(batch) : [];
    this.integratedInputs.clear();
    const missing = incomplete.length > 0 ? new Uint8Array(n) : null;
    for (const row of incomplete) missing![row] = 1;
    for (let row = 0; row < n; row++) {
      if (missing && missing[row]) {
        this.missingRow(batch, row, levelTerms, out, keep ? { logWeights, locs, far: far!, spreads: spreads as Float64Array | Float32Array } : null);
        continue;
      }
      let max = -Infinity;
      if (levelTerms) for (let k = 0; k < K; k++) rowConstant[k] = constant[k] + levelTerms[row * K + k];
      // x/(1+x) ≤ ln(1+x) ≤ x bounds l_k = c_k − h_k ln(1 + δ²_k/dof_k) from both sides without a
      // logarithm: a component whose upper bound lies more than FAR_LOG_WEIGHT below the best lower
      // bound has weight < 1e−18 of the largest, below anything printed, and is left out (weight 0)
      // without ln or exp. Most rows sit in one cluster, so this saves most of the loop. When the
      // mixture itself is wanted (keep), the bound is kept: the log density of an outlying y may rest
      // on such a component, and Predictor.mixture evaluates it exactly when its bound says it might.
      let floor = -Infinity;
      if (covariate) {
        for (let k = 0; k < K; k++) {
          const lower = rowConstant[k] - halfPower[k] * covariate[row * K + k] * inverseDof[k];
          if (lower > floor) floor = lower;
        }
        floor -= FAR_LOG_WEIGHT;
      }
      for (let k = 0; k < K; k++) {
        let l = rowConstant[k];
        if (covariate) {
          const x = covariate[row * K + k] * inverseDof[k];
          const upper = rowConstant[k] - (halfPower[k] * x) / (1 + x);
          l = upper < floor ? -Infinity : rowConstant[k] - halfPower[k] * Math.log1p(x);
          bounds[k] = upper;
        }
        w[k] = l;
        if (l > max) max = l;
      }
      let total = 0;
      let best = -1;
      let bestWeight = 0;
      for (let k = 0; k < K; k++) {
        const e = w[k] === -Infinity ? 0 : Math.exp(w[k] - max);
        if (keep) {
          far![row * K + k] = w[k] === -Infinity ? 1 : 0;
          logWeights[row * K + k] = (w[k] === -Infinity ? bounds[k] : w[k]) - max;
        }
        w[k] = e;
        total += e;
        if (e > bestWeight) {
          bestWeight = e;
          best = k;
        }
      }
      moments.fill(0);
      const base = row * P;
      const uRow = m.predictive.parameters ? u.subarray(base, base + P) : u; // only a family with parameters reads it
      const lnTotal = keep ? Math.log(total) : 0;
      for (let k = 0; k < K; k++) {
        const weight = w[k] / total;
        if (keep) logWeights[row * K + k] -= lnTotal;
        if (weight === 0) continue;
        let mu = 0;
        for (let i = 0; i < P; i++) mu += coef[k * P + i] * u[base + i];
        if (keep) locs[row * K + k] = mu;
        add(moments, weight, mu, spreads[row * K + k], offsets ? offsets[row] : 0, familyConstant[k], uRow, familyParameters[k]);
      }
      cluster[row] = best;
      clusterProbability[row] = best < 0 ? 0 : bestWeight / total;
      mean[row] = meanOf(moments, std);
      if (sd) sd[row] = sdOf!(moments, std);
      if (probabilities) probabilities.set(moments, row * moments.length);
    }
    if (keep) this.mixture(batch, q, logWeights, locs, far!, out);
    return out;
  }

  /**
   * A row with missing covariates (docs/model.md §18), in float64: p(z = k | x_o) from the observed
   * sub-vector's Student-t marginal St(x_o | m_o, Σ_oo, dof) (a Student-t's marginal is Student-t
   * with the same dof), and component k's response from u with each missing input at its
   * conditional mean E[x_m | x_o, k] = m_m + Σ_mo Σ_oo⁻¹ (x_o − m_o), its conditional covariance
   * V = (dof + δ²)/(dof + o − 2) (Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om) (the conditional Student-t's) entering
   * the spread twice: E[uᵀΛ⁻¹u] = ûᵀΛ⁻¹û + tr(Λ⁻¹V), and the variance θᵀVθ it gives η, in spread
   * units (spreadPerVariance). With `keep`, writes what `mixture` reads.
   */
  private missingRow(
    batch: Batch,
    row: number,
    levelTerms: Float64Array | null,
    out: Prediction,
    keep: { logWeights: Float64Array; locs: Float64Array; far: Int32Array; spreads: Float64Array | Float32Array } | null,
  ): void {
    const m = this.model;
    const { K, D, P, coef, familyConstant, std, spreadFactor } = m;
    const { logWeight, mean, scale, dof, inputs } = m.marginal;
    const x = batch.x.subarray(row * D, (row + 1) * D);
    const observed = Array.from({ length: D }, (_, i) => i).filter((i) => !Number.isNaN(x[i]));
    const absent = Array.from({ length: D }, (_, i) => i).filter((i) => Number.isNaN(x[i]));
    // The missing covariates that are regression inputs (linked), the same under every component.
    const linked = absent.filter((i) => (inputs[i] ?? -1) >= 0);
    const linkedAny = linked.length > 0;
    const o = observed.length;
    const u = Float64Array.from(batch.u.subarray(row * P, (row + 1) * P));
    // For a family whose predictive reads u (multinomial): u under each component at the nodes of a
    // Gauss–Hermite product rule over the missing inputs' conditional distribution (N(E[x_m | x_o, k], V)),
    // as its class probabilities are not a function of η's mean and variance alone.
    const rule = linkedAny && m.predictive.parameters ? productRule(linked.length) : null;
    const N = rule ? rule.weights.length : 0;
    const points = rule ? new Float64Array(K * N * P) : null;
    const lw = new Float64Array(K);
    const mu = new Float64Array(K);
    const spread = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      const s = scale.subarray(k * D * D, (k + 1) * D * D);
      const mk = mean.subarray(k * D, (k + 1) * D);
      const soo = new Float64Array(o * o);
      observed.forEach((i, a) => observed.forEach((j, b) => (soo[a * o + b] = s[i * D + j])));
      const l = cholesky(soo, o, `the observed covariates' scale matrix of component ${k + 1}`);
      // z = Σ_oo⁻¹ (x_o − m_o); δ² = (x_o − m_o)ᵀ z
      const centred = Float64Array.from(observed, (i) => x[i] - mk[i]);
      const z = backSubstitute(l, o, forwardSubstitute(l, o, centred.slice()));
      let delta2 = 0;
      for (let a = 0; a < o; a++) delta2 += centred[a] * z[a];
      const nu = dof[k];
      lw[k] =
        logWeight[k] + (levelTerms ? levelTerms[row * K + k] : 0) +
        lnGamma((nu + o) / 2) - lnGamma(nu / 2) - 0.5 * logDetFromCholesky(l, o) - (o / 2) * Math.log(nu * Math.PI) - ((nu + o) / 2) * Math.log1p(delta2 / nu);
      // u with its missing inputs at E[x_m | x_o, k]; V of those inputs (the linked missing covariates).
      const across = linked.map((i) => backSubstitute(l, o, forwardSubstitute(l, o, Float64Array.from(observed, (j) => s[i * D + j])))); // Σ_oo⁻¹ Σ_o,i
      for (const i of linked) {
        let v = mk[i];
        observed.forEach((j, a) => (v += s[i * D + j] * z[a]));
        u[inputs[i]] = v;
      }
      const inflation = (nu + delta2) / Math.max(nu + o - 2, 1e-300);
      const conditional = (a: number, b: number) => {
        let v = s[linked[a] * D + linked[b]];
        observed.forEach((j, c) => (v -= s[linked[a] * D + j] * across[b][c]));
        return inflation * v;
      };
      let eta = 0;
      for (let i = 0; i < P; i++) eta += coef[k * P + i] * u[i];
      mu[k] = eta;
      let sq = 0; // uᵀΛ_k⁻¹u = ‖uᵀ C_k‖²
      for (let j = 0; j < P; j++) {
        let t = 0;
        for (let i = j; i < P; i++) t += u[i] * spreadFactor[i * K * P + k * P + j];
        sq += t * t;
      }
      // tr(Λ⁻¹V) and θᵀVθ over the linked inputs, Λ⁻¹ = C Cᵀ
      const cc = (i: number, j: number) => {
        let t = 0;
        for (let q = 0; q <= Math.min(i, j); q++) t += spreadFactor[i * K * P + k * P + q] * spreadFactor[j * K * P + k * P + q];
        return t;
      };
      let trace = 0;
      let variance = 0;
      linked.forEach((ia, a) =>
        linked.forEach((ib, b) => {
          const v = conditional(a, b);
          trace += cc(inputs[ia], inputs[ib]) * v;
          variance += coef[k * P + inputs[ia]] * coef[k * P + inputs[ib]] * v;
        }),
      );
      spread[k] = sq + trace + variance * m.marginal.spreadPerVariance[k];
      if (rule && points) {
        // u at node z: E[u] + L z at the linked inputs, L Lᵀ = V (a relative 1e-12 on the diagonal keeps
        // a singular V, inputs fixed by the observed ones, factorable).
        const d = linked.length;
        const v = Float64Array.from({ length: d * d }, (_, i) => conditional(Math.floor(i / d), i % d));
        const ridge = 1e-12 * Math.max(...Array.from({ length: d }, (_, a) => v[a * d + a])) + 1e-300;
        for (let a = 0; a < d; a++) v[a * d + a] += ridge;
        const l = cholesky(v, d, `the missing inputs' conditional covariance under component ${k + 1}`);
        for (let node = 0; node < N; node++) {
          const point = points.subarray((k * N + node) * P, (k * N + node + 1) * P);
          point.set(u);
          for (let a = 0; a < d; a++) {
            let shift = 0;
            for (let b = 0; b <= a; b++) shift += l[a * d + b] * rule.nodes[node * d + b];
            point[inputs[linked[a]]] += shift;
          }
        }
      }
    }
    logSumExp(lw, K, lw); // lw ← p(z = k | x_o)
    if (rule && points) this.integratedInputs.set(row, { points, weights: rule.weights });
    const moments = new Float64Array(m.accumulated);
    let best = -1;
    for (let k = 0; k < K; k++) {
      if (best < 0 || lw[k] > lw[best]) best = k;
      // A family that reads u (multinomial) is integrated over the missing inputs by the rule's nodes (above).
      const offset = batch.offset ? batch.offset[row] : 0;
      if (lw[k] > 0 && points) {
        for (let node = 0; node < N; node++) {
          const point = points.subarray((k * N + node) * P, (k * N + node + 1) * P);
          m.predictive.add(moments, lw[k] * rule!.weights[node], mu[k], spread[k], offset, familyConstant[k], point, m.familyParameters[k]);
        }
      } else if (lw[k] > 0) m.predictive.add(moments, lw[k], mu[k], spread[k], offset, familyConstant[k], u, m.familyParameters[k]);
      if (keep) {
        keep.logWeights[row * K + k] = Math.log(lw[k]);
        keep.locs[row * K + k] = mu[k];
        keep.far[row * K + k] = 0;
        keep.spreads[row * K + k] = spread[k];
      }
    }
    out.cluster[row] = best;
    out.clusterProbability[row] = lw[best];
    out.mean[row] = m.predictive.mean(moments, std);
    if (out.sd) out.sd[row] = m.predictive.sd!(moments, std);
    if (out.probabilities) out.probabilities.set(moments, row * moments.length);
  }

  /**
   * The interval, ln p(y | x) and p(z | x, y) of each row (docs/model.md §10), from its log weights
   * ln p(z=k | x) and component means μ_k (`logWeights`, `locs`: n × K, standardized) and spreads
   * uᵀΛ_k⁻¹u (n × K). Rows whose y is missing (NaN) get NaN log densities and keep p(z | x).
   */
  private mixture(batch: Batch, q: Quadratics, logWeights: Float64Array, locs: Float64Array, far: Int32Array, out: Prediction): void {
    const m = this.model;
    const { K, P, yMean, ySd, gaussian, constant, halfPower, inverseDof, coef } = m;
    const spreads = q.spread;
    const covariate = q.covariate;
    const { interval, logDensity, clusterGivenY } = this.options;
    const n = batch.n;
    const y = batch.y;
    const lo = interval === undefined ? undefined : (out.lo = this.arrays.float64('lo', n));
    const hi = interval === undefined ? undefined : (out.hi = this.arrays.float64('hi', n));
    const density = logDensity ? (out.logDensity = this.arrays.float64('logDensity', n)) : undefined;
    const tail = interval === undefined ? 0 : (1 - interval) / 2;
    const logWeight = new Float64Array(K);
    const loc = new Float64Array(K);
    const scale = new Float64Array(K);
    const terms = new Float64Array(K);
    const posterior = new Float64Array(K);
    // s_k² = (b_k/a_k)(1 + uᵀΛ_k⁻¹u) ≥ b_k/a_k: ½ ln(b_k/a_k) bounds ln s_k from below on every row.
    const logScaleFloor = m.noiseScale2.map((v) => 0.5 * Math.log(v));
    const mix: StudentTMixture = { count: K, logWeight, loc, scale, dof: m.noiseDof, logNormalizer: m.noiseLogNormalizer, logScaleFloor };
    // ln of the Jacobian from the standardized to the data scale of y (gaussian): ln p(y) = ln p(ỹ) − ln s_y.
    const jacobian = gaussian ? Math.log(ySd) : 0;
    // ln p(y | z=k) of a family whose predictive is not a Student-t (bernoulli, poisson): its own, ≤ 0.
    const componentLogDensity = m.predictive.logDensity;
    const logOther = (target: number, k: number, row: number) => {
      const density = (u: Float64Array) =>
        componentLogDensity!(target, loc[k], spreads[row * K + k], batch.offset ? batch.offset[row] : 0, m.familyConstant[k], u, m.familyParameters[k]);
      const integrated = this.integratedInputs.get(row);
      if (!integrated) return density(batch.u.subarray(row * P, (row + 1) * P));
      // ln Σ_i w_i p(y | u_i, z = k) over the missing inputs' nodes (missingRow).
      const { points, weights } = integrated;
      const N = weights.length;
      return logSumExp(Float64Array.from(weights, (w, node) => Math.log(w) + density(points.subarray((k * N + node) * P, (k * N + node + 1) * P))), N);
    };
    for (let row = 0; row < n; row++) {
      let top = -1;
      for (let k = 0; k < K; k++) {
        logWeight[k] = logWeights[row * K + k];
        loc[k] = far[row * K + k] ? 0 : locs[row * K + k];
        if (!far[row * K + k] && (top < 0 || logWeight[k] > logWeight[top])) top = k;
        if (gaussian) scale[k] = Math.sqrt(m.noiseScale2[k] * (1 + spreads[row * K + k])); // PRML 3.59 with E[1/τ] → b/a
      }
      const target = y[row];
      const known = (logDensity || clusterGivenY) && !Number.isNaN(target);
      // A component left out of p(z | x) (far: its log weight here is an upper bound) stays out
      // unless that bound, times its density's largest value, comes within FAR_LOG_WEIGHT of the
      // heaviest component's term: then it is evaluated exactly (an outlying y near it).
      const first = !known
        ? Infinity
        : gaussian
          ? logWeight[top] + studentTLogDensity(target, loc[top], scale[top], m.noiseDof[top], m.noiseLogNormalizer[top])
          : logWeight[top] + logOther(target, top, row);
      for (let k = 0; k < K; k++) {
        if (!far[row * K + k]) continue;
        const bound = logWeight[k] + (gaussian ? m.noiseLogNormalizer[k] - logScaleFloor[k] : 0);
        if (!(bound >= first - FAR_LOG_WEIGHT) || !covariate) {
          logWeight[k] = -Infinity;
          continue;
        }
        const lnWeight = (c: number) =>
          constant[c] + (this.levelTerms ? this.levelTerms[row * K + c] : 0) - halfPower[c] * Math.log1p(covariate[row * K + c] * inverseDof[c]);
        logWeight[k] = logWeight[top] + lnWeight(k) - lnWeight(top);
        let mu = 0;
        for (let i = 0; i < P; i++) mu += coef[k * P + i] * batch.u[row * P + i];
        loc[k] = mu;
      }
      if (lo && hi) {
        lo[row] = yMean + ySd * mixtureQuantile(tail, mix, this.unitLo!);
        hi[row] = yMean + ySd * mixtureQuantile(1 - tail, mix, this.unitHi!);
      }
      if (!(logDensity || clusterGivenY)) continue;
      if (!known) {
        if (density) density[row] = NaN;
        continue;
      }
      let ln: number;
      if (gaussian) ln = mixtureLogDensity(target, mix, terms, posterior);
      else {
        for (let k = 0; k < K; k++) terms[k] = logWeight[k] > -Infinity ? logWeight[k] + logOther(target, k, row) : -Infinity;
        ln = logSumExp(terms, K, posterior);
      }
      if (density) density[row] = ln - jacobian;
      // A y no component can explain (p(y | x) underflows to 0) leaves the cluster from p(z | x).
      if (clusterGivenY && ln > -Infinity) {
        let best = -1;
        for (let k = 0; k < K; k++) if (posterior[k] > (best < 0 ? 0 : posterior[best])) best = k;
        out.cluster[row] = best;
        out.clusterProbability[row] = best < 0 ? 0 : posterior[best];
      }
    }
  }

  /** Frees the backend's copies of the factors. */
  dispose(): void {
    this.tfjs?.dispose();
  }
}

/**
 * Checks a Predictor's options against the model: an interval needs a probability in (0, 1) and
 * a gaussian response (a 0/1 target's predictive is P(y = 1) itself: any central interval of it
 * is {0}, {1} or {0, 1}, which says no more than the probability).
 */
export function checkPredictOptions(doc: PosteriorDocument, options: PredictOptions, file = 'posterior.json'): void {
  const { interval } = options;
  if (interval === undefined) return;
  if (typeof interval !== 'number' || !(interval > 0 && interval < 1))
    throw new PredictOptionError(`interval must be a probability strictly between 0 and 1 (e.g. 0.9), got ${String(interval)}`);
  if (doc.family !== 'gaussian') {
    const kind = familyOf(doc.family).target.kind;
    throw new PredictOptionError(
      kind === 'binary'
        ? `interval needs a gaussian model, and ${file} is ${doc.family}: its prediction P(y = 1) is already the whole predictive distribution (a central interval of a 0/1 target is {0}, {1} or {0, 1})`
        : kind === 'category'
          ? `interval needs a gaussian model, and ${file} is ${doc.family}: its class probabilities are already the whole predictive distribution`
          : `interval needs a gaussian model, and ${file} is ${doc.family} (its prediction_sd describes the spread)`,
    );
  }
}

/** A predict option that cannot be used with the arguments or the model; the message names the option. */
export class PredictOptionError extends ClusterwiseError {
  constructor(message: string) {
    super(message);
    this.name = 'PredictOptionError';
  }
}

/** Predictions for one batch in float64 (the reference; `Predictor` for many batches or TensorFlow.js). */
export function predict(doc: PosteriorDocument, batch: Batch): Prediction {
  return new Predictor(doc).predict(batch);
}
