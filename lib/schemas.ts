/**
 * The published file formats as zod schemas: posterior.json (what `fit` writes and `predict` reads)
 * and model.json (lib/config.ts, the one configuration schema). `npm run schemas` writes their JSON
 * Schemas to schemas/*.schema.json, which ship with the package; test/schemas.test.ts fails when the
 * shipped files differ from these. The format version policy is in docs/library.md.
 */
import { z } from 'zod';
import { ModelConfigSchema } from './config.js';
import { FAMILY_NAMES } from './model/families/index.js';
import type { ComponentSummary, Criteria, PosteriorDocument, SharedSummary, SummarizedPosterior } from './model/summary.js';

/** The format tag posterior.json carries; its number changes only with a breaking change. */
export const POSTERIOR_FORMAT = 'clusterwise/posterior@1';

const columns = z.array(z.string()).describe('column names');
/** A number that may be null in JSON: a value that does not exist (e.g. an undefined covariance). */
const maybe = z.number().nullable();

const Component = z
  .object({
    id: z.number().int().min(0).describe("the component's index in the state (its position in state.lambda)"),
    weight: z.number().describe('E[π_k], the expected mixing weight'),
    size: z.number().describe('N_k, the expected number of rows'),
    mean: z.array(z.number()).optional().describe('E[μ_k] in data units (absent when conditional-only)'),
    covariance: z
      .array(z.array(maybe))
      .optional()
      .describe('E[Σ_k] = W_k⁻¹ / (ν_k − D − 1) in data units; null where ν_k ≤ D + 1 (absent when conditional-only)'),
    intercept: z.number().describe('posterior mean intercept in data units (bernoulli: log-odds)'),
    coefficients: z.array(z.number()).describe('posterior mean coefficients, in the order of regressionColumns (a shared column\'s entry is its shared slope, reported once in shared)'),
    interceptSd: z.number().describe('marginal posterior sd of the intercept'),
    coefficientSd: z.array(z.number()).describe('marginal posterior sds of the coefficients'),
    noiseSd: z.number().optional().describe('sqrt(E[1/τ_k]), the noise sd in data units (gaussian only)'),
    categories: z
      .record(z.string(), z.record(z.string(), z.number()))
      .optional()
      .describe('E[φ_kjl]: per categorical clustering column, the probability of each level in this component'),
    classes: z
      .array(
        z.object({
          class: z.string().describe('the class label'),
          intercept: z.number(),
          coefficients: z.array(z.number()),
          interceptSd: z.number(),
          coefficientSd: z.array(z.number()),
        }),
      )
      .optional()
      .describe("multinomial: each non-reference class's log-odds against the reference class (the first sorted label), in data units; intercept and coefficients above are the first of these"),
  })
  .describe('one reported component (cluster); its position in components[] is its cluster number');

const Standardization = z.object({
  xMean: z.array(z.number()),
  xSd: z.array(z.number()),
  rMean: z.array(z.number()),
  rSd: z.array(z.number()),
  yMean: z.number(),
  ySd: z.number(),
});

const Relevance = z
  .array(
    z.object({
      column: z.string(),
      relevant: z.boolean().describe('modelled per cluster (true) or by the shared background Gaussian'),
      logBayesFactor: z.number().describe('ln B_j, relevant against background, for the fit\'s responsibilities'),
      probability: z.number().describe('B_j / (1 + B_j): posterior probability that the column carries cluster information'),
    }),
  )
  .describe('each candidate clustering column: whether it carries cluster information (docs/model.md §13)');

/** A parsed column of the plan: how it is read (lib/data/csv.ts ColumnKind), and a category's levels. */
export const SelectedColumnSchema = z.object({
  column: z.string(),
  kind: z.enum(['number', 'binary', 'count', 'positive', 'category']),
  optional: z.boolean().optional(),
  marginal: z.boolean().optional().describe('a missing value is marginalized (NaN), not a skipped row (docs/model.md §18)'),
  levels: z.array(z.string()).optional().describe("a category's levels, sorted; the first is the regression's reference level"),
});

/** The plan's categorical parts (docs/model.md §16), absent without categorical columns. */
export const CategoricalPlanSchema = {
  xc: columns.optional().describe('categorical clustering columns'),
  xcSlot: z.array(z.number().int().min(0)).optional(),
  rLevel: z.array(z.number().int().min(-1)).optional().describe('per regression input: the level it indicates, or −1 for a numeric column'),
};

const ColumnPlan = z.object({
  target: z.string(),
  x: columns,
  r: columns,
  select: z.array(SelectedColumnSchema),
  xSlot: z.array(z.number().int()),
  rSlot: z.array(z.number().int()),
  ySlot: z.number().int(),
  ...CategoricalPlanSchema,
  offset: z.object({ column: z.string(), slot: z.number().int().min(0), log: z.boolean() }).optional(),
  relevance: Relevance.optional(),
});

export const PosteriorSchema = z
  .object({
    format: z.literal(POSTERIOR_FORMAT),
    dataset: z.string().describe('dataset name ("local" for a local fit)'),
    runId: z.string(),
    family: z.enum(FAMILY_NAMES),
    target: z.string(),
    columns: columns.describe('clustering columns x (empty when conditional-only)'),
    regressionColumns: columns.describe('regression columns r (an intercept is added)'),
    weights: z.enum(['stick-breaking', 'dirichlet']),
    covariateModel: z.boolean(),
    rows: z.number().int().min(0).describe('rows used'),
    skippedRows: z.number().int().min(0).describe('rows skipped as unusable'),
    missingValues: z
      .record(z.string(), z.number().int().min(1))
      .optional()
      .describe('missing clustering-covariate values by column, marginalized rather than skipped (docs/model.md §18); absent: none'),
    elbo: z.number().describe('evidence lower bound in data units (docs/model.md §5)'),
    converged: z.boolean(),
    components: z.array(Component).describe('components expected to hold at least one row, by weight descending'),
    shared: z
      .object({
        columns: columns.describe('the regression columns whose slopes are common to every component (config sharedCoefficients)'),
        coefficients: z.array(z.number()).describe('posterior mean shared slopes in data units, in the order of columns'),
        coefficientSd: z.array(z.number()).describe('their marginal posterior sds'),
      })
      .optional()
      .describe('slopes common to every component, reported once (docs/model.md §15; absent without sharedCoefficients)'),
    concentration: z.number().optional().describe('E[α] (stick-breaking only)'),
    covariateRelevance: Relevance.optional(),
    criteria: z
      .object({
        logLikelihood: z.number().describe('plug-in log-likelihood ln L̂, as the bound CLL + H'),
        completeLogLikelihood: z.number().describe('CLL: expected complete-data log-likelihood at the plug-in parameters'),
        entropy: z.number().describe('H: entropy of q(z), nats'),
        parameters: z.number().int().describe('free parameters of the reported components'),
        bic: z.number(),
        icl: z.number(),
      })
      .optional()
      .describe('model comparison at the posterior means (docs/model.md §12; gaussian only; lower BIC / ICL is better)'),
    state: z
      .object({
        config: ModelConfigSchema,
        plan: ColumnPlan,
        standardization: Standardization,
        lambda: z.string().describe('natural coordinates: base64 of little-endian float64 values, in the layout of lib/model/spec.ts'),
        alpha: z.object({ shape: z.number(), rate: z.number() }).nullable().describe('q(α) = Gamma(shape, rate), or null when α is fixed'),
      })
      .describe('what predict and warm starts need; internal layout, versioned with the format'),
    skipped: z
      .array(z.object({ file: z.string(), line: z.number().int(), column: z.string(), value: z.string(), reason: z.string() }))
      .optional()
      .describe('up to 50 skipped rows with file and 1-based line (header = line 1)'),
    trace: z
      .array(
        z.object({
          phase: z.enum(['svi', 'batch', 'assign']),
          round: z.number().int(),
          version: z.number().int(),
          elbo: z.number(),
          staleness: z.number().optional(),
          rho: z.number().optional(),
        }),
      )
      .optional()
      .describe('ELBO per SVI step (an estimate) and per batch sweep, in data units'),
  })
  .describe('posterior.json: a fitted clusterwise model, every number in the data units unless noted');

/** posterior.json as written by fit (with its skipped rows and trace). */
export type Posterior = z.infer<typeof PosteriorSchema>;

// The schema describes exactly what summary.ts produces: these fail to compile when the two drift.
// (A covariance entry is NaN in memory where it does not exist, which JSON writes as null.)
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const componentMatches: Same<Omit<z.infer<typeof Component>, 'covariance'>, Omit<ComponentSummary, 'covariance'>> = true;
const documentMatches: Same<Omit<Posterior, 'skipped' | 'trace' | 'state' | 'components'>, Omit<SummarizedPosterior, 'state' | 'components'>> = true;
const criteriaMatch: Same<NonNullable<Posterior['criteria']>, Criteria> = true;
const sharedMatches: Same<NonNullable<Posterior['shared']>, SharedSummary> = true;
void componentMatches;
void documentMatches;
void criteriaMatch;
void sharedMatches;

/**
 * A posterior as the model code takes it. The two differ only in a covariance entry that does not
 * exist: NaN in memory, null in JSON. The code that takes a PosteriorDocument never reads
 * covariances, so any Posterior serves; the reverse direction needs no conversion.
 */
export function asDocument(posterior: Posterior): PosteriorDocument {
  return posterior as PosteriorDocument;
}

/** JSON Schema (draft 2020-12) of posterior.json. */
export function posteriorJsonSchema(): Record<string, unknown> {
  return {
    title: 'clusterwise posterior.json',
    ...z.toJSONSchema(PosteriorSchema, { io: 'output' }),
  };
}

/**
 * JSON Schema of model.json. `io: "input"`: what a user may write (every defaulted field optional),
 * not the filled-in result.
 */
export function modelJsonSchema(): Record<string, unknown> {
  return {
    title: 'clusterwise model.json',
    ...z.toJSONSchema(ModelConfigSchema, { io: 'input' }),
  };
}
