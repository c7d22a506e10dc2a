/**
 * The one configuration schema: what a user may set (CLI flags, datasets/<name>/model.json) and
 * every default and bound. Parse with `parseConfig` (or `parseConfigLayers` when the settings come
 * from several places); nothing else in the code base supplies a default.
 *
 * Every number is bounded: a setting is also a bill (tasks, files written, planner memory), so a
 * value far past anything useful is an error that states the bound, not a run that never ends.
 */
import { z } from 'zod';
import { ClusterwiseError } from './errors.js';
import { FAMILY_NAMES, familyOf } from './model/families/index.js';

/** A finite number in [min, max]; the bounds appear in the error (see describeIssue). */
const between = (min: number, max: number) => z.number().min(min).max(max);
const wholeBetween = (min: number, max: number) => z.number().int().min(min).max(max);
/** Prior hyperparameters: positive, and within 1e-8…1e8, far past any prior that means something on the standardized scale. */
const hyper = between(1e-8, 1e8);

/** A column name, trimmed as the header's names are (so `--target " y"` finds the column y). */
const columnName = z.string().trim().min(1);

/** Column name lists: distinct names (a repeated column would count its evidence twice). */
const columnList = (max: number) =>
  z
    .array(columnName)
    .max(max)
    .refine((names) => new Set(names).size === names.length, {
      message: 'lists a column more than once',
    });

/** Most columns in a list: the statistics grow as T·D², and so do every queue message and posterior version. */
export const MAX_COLUMNS = 100;

/** Field separators a CSV may use: `,` (the default), `;`, tab or `|`. */
export const DELIMITERS = [',', ';', '\t', '|'] as const;
export type Delimiter = (typeof DELIMITERS)[number];

/** Priors, all on the standardized scale (columns centred and divided by their deviation). */
export const PriorSchema = z
  .object({
    /** Finite weights: symmetric Dirichlet concentration α0. @default 1 / components */
    dirichletConcentration: hyper.optional(),
    /** Stick-breaking concentration α when it is fixed. @default 1 */
    dpConcentration: hyper.default(1),
    /** Gamma(shape, rate) prior on the DP concentration α; when absent α is fixed. @default absent */
    dpConcentrationPrior: z.object({ shape: hyper, rate: hyper }).strict().optional(),
    /** Normal-Wishart β0: prior pseudo-count on the cluster means (prior mean m0 = 0). @default 1 */
    meanPrecision: hyper.default(1),
    /** Normal-Wishart ν0 − D: extra degrees of freedom of the Wishart prior. @default 2 */
    extraDegreesOfFreedom: between(0, 1e6).default(2),
    /** Prior guess of a cluster's variance per standardized covariate: W0⁻¹ = ν0 · s · I. @default 0.1 */
    clusterVariance: hyper.default(0.1),
    /** Regression slopes θ ~ N(0, (τ Λ0)⁻¹) (gaussian) or N(0, Λ0⁻¹) (other families), Λ0 = diag(this, …, interceptPrecision). @default 0.01 */
    coefficientPrecision: hyper.default(0.01),
    /**
     * The intercept's entry of Λ0: vaguer than the slopes'. The intercept is the regression's value
     * at the columns' means (the standardized origin), which a cluster far from them extrapolates
     * to; there the slopes' precision shrank it, and through it the slopes (docs/model.md §11). @default 0.0001
     */
    interceptPrecision: hyper.default(1e-4),
    /** Categorical covariates: each component's level probabilities of a column ~ Dirichlet(this · 1). @default 1 */
    levelConcentration: hyper.default(1),
    /** Gaussian noise precision τ ~ Gamma(a0, b0). @default 0.01 */
    noiseShape: hyper.default(0.01),
    /** @default 0.01 */
    noiseRate: hyper.default(0.01),
  })
  .strict();

/** How inference proceeds. */
export const ScheduleSchema = z
  .object({
    /**
     * Rows per shard (one worker task), 40 to 1 000 000. Below the floor a task's fixed costs
     * (a queue message, a range read, a posterior read) outweigh its rows; above the ceiling a
     * shard outgrows a worker's cache and timeout. @default sized to the deployment: the estimated
     * rows / (3 × worker concurrency), between 20 000 and 500 000 (lib/pipeline/planner.ts)
     */
    shardRows: wholeBetween(40, 1_000_000).optional(),
    /**
     * SVI passes over the shuffled shards before batch sweeps, 0 to 20. Each costs as much as a
     * batch sweep, and on every data set we measured none saved a sweep after the sample-based
     * initialization (docs/model.md §7): batch sweeps, whose sums the workers reduce, are the
     * default. @default 0
     */
    sviEpochs: wholeBetween(0, 20).default(0),
    /**
     * Step size ρ_t = (t + τ)^(−κ): delay τ in [0, 10 000]. With τ = 4 the first step keeps ~60%
     * of the sample-based initialization instead of replacing it (τ = 1 gives ρ_0 = 1). @default 4
     */
    delay: between(0, 10_000).default(4),
    /** Forgetting rate κ ∈ (0.5, 1]. @default 0.7 */
    forgettingRate: z.number().gt(0.5).max(1).default(0.7),
    /**
     * Shards (tasks) in one SVI step, 1 to 10 000: every task of a step runs against the same
     * version and their sums make one step (Hoffman et al. 2013 with |B| = their rows).
     * @default the worker concurrency (Lambda concurrency, local threads), so a step takes one
     * task-time whatever the scale
     */
    shardsPerStep: wholeBetween(1, 10_000).optional(),
    /**
     * Stop batch sweeps when |ΔELBO| / |ELBO| falls below this, in [1e-12, 0.1]: below 1e-12 the
     * change is float rounding (the float32 kernel's sums differ by ~1e-8), so sweeps would only
     * end at maxSweeps. @default 1e-6
     */
    tolerance: between(1e-12, 0.1).default(1e-6),
    /** At most this many batch sweeps, 1 to 500 (not converged is reported, not an error). @default 50 */
    maxSweeps: wholeBetween(1, 500).default(50),
    /** k-means++ restarts on the sample, 1 to 20; the best by ELBO seeds the run. @default 5 */
    restarts: wholeBetween(1, 20).default(5),
    /**
     * Rows sampled for standardization and initialization, 100 to 200 000: the planner holds the
     * sample several times over (parsed, standardized, the kernel's copy), ~1.2 GB at the ceiling
     * with 100 columns, within a 2 GB planner function. @default 20_000
     */
    sampleRows: wholeBetween(100, 200_000).default(20_000),
    /** Maximum share of rows that may be skipped as unusable before the run fails. @default 0.01 */
    maxSkippedShare: between(0, 1).default(0.01),
  })
  .strict();

export const ModelConfigSchema = z
  .object({
    /** The response column. Required. */
    target: columnName,
    /** Clustering columns x, distinct, at most 100. @default every numeric column but the target and the id */
    columns: columnList(MAX_COLUMNS).min(1).optional(),
    /** Regression columns r (an intercept is always added), distinct, at most 100. @default the clustering columns */
    regressionColumns: columnList(MAX_COLUMNS).optional(),
    /**
     * Regression columns whose slopes are common to every cluster (flexmix's FLXMRglmfix): one global
     * slope vector, while the intercept and the other slopes stay per cluster (docs/model.md §15).
     * Each must be a regression column; at least one regression column or the intercept stays per
     * cluster. @default none
     */
    sharedCoefficients: columnList(MAX_COLUMNS).optional(),
    /**
     * Columns read as categories (levels are their distinct texts, sorted; docs/model.md §16): as
     * clustering columns, a Dirichlet-categorical factor per component; as regression columns,
     * treatment-coded (one 0/1 input per level but the first). Each must also be a clustering or
     * regression column; a listed column whose sampled values are not numbers is categorical
     * without being listed here. At most 100. @default none
     */
    categorical: columnList(MAX_COLUMNS).optional(),
    /** A column naming each row: never a covariate; locally, assignments.csv carries it. @default none */
    id: columnName.optional(),
    /** The field separator. @default detected from each file's header line among , ; tab | */
    delimiter: z.enum(DELIMITERS).optional(),
    /** Response family, one of lib/model/families/index.ts. @default "gaussian" */
    family: z.enum(FAMILY_NAMES).default('gaussian'),
    /**
     * A column added as is to the linear predictor η = θᵀu (a log-link family: poisson; ln of an
     * exposure, say). Never a covariate. @default none
     */
    offset: columnName.optional(),
    /** A column of positive exposures (time at risk, population): its logarithm is the offset (poisson). @default none */
    exposure: columnName.optional(),
    /** Truncation level T (stick-breaking) or number of components (dirichlet), 1 to 200. @default 20 */
    components: wholeBetween(1, 200).default(20),
    /** Mixing weights. @default "stick-breaking" */
    weights: z.enum(['stick-breaking', 'dirichlet']).default('stick-breaking'),
    /** Model p(x) with a Gaussian mixture (cluster-weighted model); false: conditional-only. @default true */
    covariateModel: z.boolean().default(true),
    /**
     * Decide on the planner's sample which clustering columns carry cluster information; the others
     * are modelled by one shared background Gaussian instead of per cluster, so they cannot decide
     * the clusters (docs/model.md §13). false: every clustering column is modelled per cluster. @default true
     */
    covariateSelection: z.boolean().default(true),
    /** Seed of every random choice (k-means++ restarts, the SVI shard order), 0 to 2³¹ − 1. @default 1 */
    seed: wholeBetween(0, 2 ** 31 - 1).default(1),
    /** Also write per-row assignments (result/assignments/part-*.csv; locally OUT/assignments.csv). @default false */
    assignments: z.boolean().default(false),
    priors: PriorSchema.default(() => PriorSchema.parse({})),
    schedule: ScheduleSchema.default(() => ScheduleSchema.parse({})),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const role of ['columns', 'regressionColumns'] as const) {
      if (config[role]?.includes(config.target))
        ctx.addIssue({ code: 'custom', path: [role], message: `includes the target "${config.target}"` });
      if (config.id !== undefined && config[role]?.includes(config.id))
        ctx.addIssue({ code: 'custom', path: [role], message: `includes the id column "${config.id}"` });
    }
    if (config.id === config.target) ctx.addIssue({ code: 'custom', path: ['id'], message: 'is the target column' });
    for (const column of config.categorical ?? []) {
      if (column === config.target || column === config.id)
        ctx.addIssue({ code: 'custom', path: ['categorical'], message: `includes the ${column === config.target ? 'target' : 'id'} column "${column}"` });
      else if (!((config.covariateModel && (config.columns?.includes(column) ?? true)) || (config.regressionColumns ?? config.columns)?.includes(column) !== false))
        ctx.addIssue({ code: 'custom', path: ['categorical'], message: `"${column}" is neither a clustering nor a regression column` });
    }
    for (const role of ['offset', 'exposure'] as const) {
      const column = config[role];
      if (column === undefined) continue;
      if (!familyOf(config.family).acceptsOffset)
        ctx.addIssue({ code: 'custom', path: [role], message: `needs a family with a log link (poisson); the family is "${config.family}"` });
      if (column === config.target || column === config.id)
        ctx.addIssue({ code: 'custom', path: [role], message: `is the ${column === config.target ? 'target' : 'id'} column` });
      for (const list of ['columns', 'regressionColumns'] as const)
        if (config[list]?.includes(column)) ctx.addIssue({ code: 'custom', path: [list], message: `includes the ${role} column "${column}"` });
    }
    const shared = config.sharedCoefficients ?? [];
    const cannotShare = familyOf(config.family).noSharedCoefficients;
    if (shared.length > 0 && cannotShare)
      ctx.addIssue({ code: 'custom', path: ['sharedCoefficients'], message: `not available for the ${config.family} family (${cannotShare}); drop --shared-coefficients` });
    for (const column of shared) {
      if (config.regressionColumns !== undefined && !config.regressionColumns.includes(column))
        ctx.addIssue({ code: 'custom', path: ['sharedCoefficients'], message: `"${column}" is not one of the regression columns (${config.regressionColumns.join(', ') || 'none'})` });
      if (column === config.target || column === config.id || column === config.offset || column === config.exposure)
        ctx.addIssue({ code: 'custom', path: ['sharedCoefficients'], message: `"${column}" is the ${column === config.target ? 'target' : column === config.id ? 'id' : 'offset'} column, not a regression column` });
    }
    if (config.offset !== undefined && config.exposure !== undefined)
      ctx.addIssue({ code: 'custom', path: ['exposure'], message: 'give an offset or an exposure, not both (an exposure is ln-transformed into the offset)' });
  });

export type ModelConfigInput = z.input<typeof ModelConfigSchema>;
export type ModelConfig = z.output<typeof ModelConfigSchema>;
export type Priors = z.output<typeof PriorSchema>;
export type Schedule = z.output<typeof ScheduleSchema>;
export type Family = ModelConfig['family'];

/** Raised for a configuration that does not validate; names the source and every bad field. */
export class ConfigError extends ClusterwiseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** Validate and fill defaults. `source` names where the config came from (a file, "command line"). */
export function parseConfig(input: unknown, source = 'configuration'): ModelConfig {
  return parseConfigLayers([{ source, values: input }]);
}

/** Settings from one place: a file's contents, or the command line's flags. */
export interface ConfigLayer {
  /** Shown in errors: a file name, or "command line". */
  source: string;
  values: unknown;
}

/**
 * Merges layers key by key at the top level (a later layer wins; a `priors` or `schedule` object
 * replaces an earlier one whole), validates, and fills defaults. Each error names the layer that
 * set the offending key, e.g. `fit.json: invalid model configuration: schedule.maxSweeps: must be
 * at most 500 (got 1000000000)`; an unknown key gets the closest known one as a suggestion.
 */
export function parseConfigLayers(layers: readonly ConfigLayer[]): ModelConfig {
  const merged: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  for (const layer of layers) {
    if (!isPlainObject(layer.values))
      throw new ConfigError(`${layer.source}: invalid model configuration: must be a JSON object, got ${describeValue(layer.values)}`);
    for (const [key, value] of Object.entries(layer.values)) {
      if (value === undefined) continue;
      merged[key] = value;
      origin.set(key, layer.source);
    }
  }
  const parsed = ModelConfigSchema.safeParse(merged);
  if (parsed.success) return parsed.data;
  const bySource = new Map<string, string[]>();
  const fallback = layers[layers.length - 1]?.source ?? 'configuration';
  for (const issue of parsed.error.issues) {
    for (const { path, text } of describeIssue(issue, merged)) {
      const source = origin.get(String(path[0])) ?? fallback;
      bySource.set(source, [...(bySource.get(source) ?? []), `${path.join('.') || '(root)'}: ${text}`]);
    }
  }
  throw new ConfigError(
    [...bySource].map(([source, problems]) => `${source}: invalid model configuration: ${problems.join('; ')}`).join('\n'),
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' ? 'an object' : String(value);
}

/** The value at `path` in the input, for "(got …)". */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) value = isPlainObject(value) || Array.isArray(value) ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  return value;
}

/** The keys an object at `path` accepts (for "did you mean"). */
function knownKeys(path: readonly PropertyKey[]): string[] {
  const where = path.join('.');
  const schema = where === '' ? ModelConfigSchema : where === 'priors' ? PriorSchema : where === 'schedule' ? ScheduleSchema : undefined;
  return schema ? Object.keys(schema.shape) : ['shape', 'rate']; // priors.dpConcentrationPrior
}

/** One zod issue as messages a person can act on: the bound, the allowed values, a suggestion. */
function describeIssue(issue: z.core.$ZodIssue, input: unknown): { path: PropertyKey[]; text: string }[] {
  const path = issue.path;
  const got = () => {
    const value = valueAt(input, path);
    return value === undefined ? '' : ` (got ${JSON.stringify(value) ?? String(value)})`;
  };
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(path);
      return issue.keys.map((key) => {
        const near = closest(key, known);
        return { path: [...path, key], text: `unknown setting${near ? `; did you mean "${near}"?` : ` (known: ${known.join(', ')})`}` };
      });
    }
    case 'too_big':
      if (issue.origin === 'array') return [{ path, text: `at most ${issue.maximum} entries` }];
      return [{ path, text: `must be ${issue.inclusive ? 'at most' : 'less than'} ${String(issue.maximum)}${got()}` }];
    case 'too_small':
      if (issue.origin === 'array') return [{ path, text: `at least ${issue.minimum} ${Number(issue.minimum) === 1 ? 'entry' : 'entries'}` }];
      if (issue.origin === 'string') return [{ path, text: 'must not be empty' }];
      return [{ path, text: `must be ${issue.inclusive ? 'at least' : 'greater than'} ${String(issue.minimum)}${got()}` }];
    case 'invalid_value':
      return [{ path, text: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}${got()}` }];
    case 'invalid_type': {
      const value = valueAt(input, path);
      if (value === undefined) return [{ path, text: 'required' }];
      const expected = issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`;
      return [{ path, text: `must be ${expected}${got()}` }];
    }
    default:
      return [{ path, text: `${issue.message}${got()}` }];
  }
}

/** The known key nearest to `key` (case-insensitive edit distance ≤ 1/3 of its length, at least 2), if any. */
export function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}
