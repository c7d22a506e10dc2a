/**
 * The one configuration schema: what a user may set (CLI flags, datasets/<name>/model.json) and
 * every default. Parse with `parseConfig`; nothing else in the code base supplies a default.
 */
import { z } from 'zod';

const positive = z.number().positive();

/** Priors, all on the standardized scale (columns centred and divided by their deviation). */
export const PriorSchema = z
  .object({
    /** Finite weights: symmetric Dirichlet concentration α0. @default 1 / components */
    dirichletConcentration: positive.optional(),
    /** Stick-breaking concentration α when it is fixed. @default 1 */
    dpConcentration: positive.default(1),
    /** Gamma(shape, rate) prior on the DP concentration α; when absent α is fixed. @default absent */
    dpConcentrationPrior: z.object({ shape: positive, rate: positive }).optional(),
    /** Normal-Wishart β0: prior pseudo-count on the cluster means (prior mean m0 = 0). @default 1 */
    meanPrecision: positive.default(1),
    /** Normal-Wishart ν0 − D: extra degrees of freedom of the Wishart prior. @default 2 */
    extraDegreesOfFreedom: z.number().min(0).default(2),
    /** Prior guess of a cluster's variance per standardized covariate: W0⁻¹ = ν0 · s · I. @default 0.1 */
    clusterVariance: positive.default(0.1),
    /** Regression coefficients θ ~ N(0, (τ Λ0)⁻¹) (gaussian) or N(0, Λ0⁻¹) (bernoulli), Λ0 = this · I. @default 0.01 */
    coefficientPrecision: positive.default(0.01),
    /** Gaussian noise precision τ ~ Gamma(a0, b0). @default 0.01 */
    noiseShape: positive.default(0.01),
    /** @default 0.01 */
    noiseRate: positive.default(0.01),
  })
  .strict();

/** How inference proceeds. */
export const ScheduleSchema = z
  .object({
    /** Rows per shard (one worker task). @default 50_000 */
    shardRows: z.number().int().positive().default(50_000),
    /**
     * SVI passes over the shuffled shards before batch sweeps. One suffices after the sample-based
     * initialization on the data we measured; each pass costs as much as a batch sweep. @default 1
     */
    sviEpochs: z.number().int().min(0).default(1),
    /**
     * Step size ρ_t = (t + τ)^(−κ): delay τ ≥ 0. With τ = 4 the first step keeps ~60% of the
     * sample-based initialization instead of replacing it (τ = 1 gives ρ_0 = 1). @default 4
     */
    delay: z.number().min(0).default(4),
    /** Forgetting rate κ ∈ (0.5, 1]. @default 0.7 */
    forgettingRate: z.number().gt(0.5).max(1).default(0.7),
    /** Shard results folded into one SVI step. @default 2 */
    shardsPerStep: z.number().int().positive().default(2),
    /** Stop batch sweeps when |ΔELBO| / |ELBO| falls below this. @default 1e-6 */
    tolerance: positive.default(1e-6),
    /** At most this many batch sweeps (not converged is reported, not an error). @default 50 */
    maxSweeps: z.number().int().min(1).default(50),
    /** k-means++ restarts on the sample, the best by ELBO seeds the run. @default 5 */
    restarts: z.number().int().positive().default(5),
    /** Rows sampled for standardization and initialization. @default 20_000 */
    sampleRows: z.number().int().positive().default(20_000),
    /** Maximum share of rows that may be skipped as unusable before the run fails. @default 0.01 */
    maxSkippedShare: z.number().min(0).max(1).default(0.01),
  })
  .strict();

export const ModelConfigSchema = z
  .object({
    /** The response column. Required. */
    target: z.string().min(1),
    /** Clustering columns x. @default every numeric column but the target */
    columns: z.array(z.string().min(1)).min(1).optional(),
    /** Regression columns r (an intercept is always added). @default the clustering columns */
    regressionColumns: z.array(z.string().min(1)).optional(),
    /** Response family. @default "gaussian" */
    family: z.enum(['gaussian', 'bernoulli']).default('gaussian'),
    /** Truncation level T (stick-breaking) or number of components (dirichlet). @default 20 */
    components: z.number().int().min(1).max(200).default(20),
    /** Mixing weights. @default "stick-breaking" */
    weights: z.enum(['stick-breaking', 'dirichlet']).default('stick-breaking'),
    /** Model p(x) with a Gaussian mixture (cluster-weighted model); false: conditional-only. @default true */
    covariateModel: z.boolean().default(true),
    /** Seed of every random choice (k-means++ restarts, the SVI shard order). @default 1 */
    seed: z.number().int().default(1),
    /** Also write per-row assignments (result/assignments/part-*.csv; locally OUT/assignments.csv). @default false */
    assignments: z.boolean().default(false),
    priors: PriorSchema.default(() => PriorSchema.parse({})),
    schedule: ScheduleSchema.default(() => ScheduleSchema.parse({})),
  })
  .strict();

export type ModelConfigInput = z.input<typeof ModelConfigSchema>;
export type ModelConfig = z.output<typeof ModelConfigSchema>;
export type Priors = z.output<typeof PriorSchema>;
export type Schedule = z.output<typeof ScheduleSchema>;
export type Family = ModelConfig['family'];

/** Raised for a configuration that does not validate; names the source and every bad field. */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** Validate and fill defaults. `source` names where the config came from (a file, "command line"). */
export function parseConfig(input: unknown, source = 'configuration'): ModelConfig {
  const parsed = ModelConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
      .join('; ');
    throw new ConfigError(`${source}: invalid model configuration: ${problems}`);
  }
  return parsed.data;
}
