/**
 * The model's dimensions and the layout of its natural ("linear") coordinates.
 *
 * Every global factor's update is prior + sufficient statistics in these coordinates: λ = λ0 + S
 * (for a non-conjugate response family, a natural-gradient step of that form). The pipeline only
 * ever moves S, a single Float64Array in this layout, so combining, scaling and serializing
 * statistics is plain vector arithmetic.
 */
import type { Family, ModelConfig, Priors } from '../config.js';
import { ClusterwiseError } from '../errors.js';
import type { ColumnPlan } from '../data/dataset.js';
import { covariateBlocks, covariateFactorsOf } from './covariates/index.js';
import { familyOf } from './families/index.js';

export interface ModelSpec {
  /** Components (truncation level). */
  T: number;
  /** Clustering covariates x. 0 in conditional-only mode. */
  D: number;
  /** Regression inputs u = [r; 1], intercept last. */
  P: number;
  /**
   * Positions in u of the shared coefficients (config sharedCoefficients), ascending; absent or
   * empty: every coefficient is per component. The layout does not depend on it (docs/model.md §15).
   */
  shared?: readonly number[];
  family: Family;
  weights: ModelConfig['weights'];
  covariateModel: boolean;
  priors: Priors;
  /**
   * Levels L_j of each categorical clustering covariate (lib/model/covariates/categorical.ts), in
   * the plan's order; absent or empty: none (then the layout has no levels block).
   */
  levels?: readonly number[];
  /**
   * Classes C of a categorical target (the multinomial family, docs/model.md §17), from the
   * planner's sample like `levels`; absent for every other family.
   */
  classes?: number;
  /**
   * For each numeric clustering covariate x_i, the position in u of the same column (its value
   * there equals x_i: both are standardized by the same sample statistics), or −1; absent: no
   * covariate is a regression input. A missing x_i is then a missing input too (docs/model.md §18).
   */
  covariateInputs?: readonly number[];
}

/** The parts of a spec that fix the layout. */
export type LayoutSpec = Pick<ModelSpec, 'T' | 'D' | 'P' | 'family' | 'levels' | 'classes'>;

/**
 * Offsets of the blocks of a statistics (or natural-parameter) vector: the concatenation of the
 * factors' blocks, each holding T components of `width` values (block-major: all of component 0,
 * then component 1, …). The weights own count, the covariate model sx and sxx, the response
 * family suu, syu and its own syy (lib/model/families/).
 *
 * | block | shape     | statistic S (row sums, weights r_nk)          | coordinate λ        |
 * |-------|-----------|-----------------------------------------------|---------------------|
 * | count | (T)       | N_k = Σ r                                      | N_k                 |
 * | sx    | (T, D)    | Σ r x                                          | β_k m_k             |
 * | sxx   | (T, D, D) | Σ r x xᵀ                                       | W_k⁻¹ + β_k m_k m_kᵀ |
 * | suu   | (T, P, P) | Σ w_uu u uᵀ (gaussian w = r; bernoulli 2 r λ(ξ)) | Λ_k                 |
 * | syu   | (T, P)    | Σ w_u u (gaussian r y; bernoulli r (y − ½))    | h_k = Λ_k θ_k       |
 * | syy   | (T, E)    | the family's own (gaussian E = 1: Σ r y²)      | gaussian: c_k = 2 b_k + h_kᵀ θ_k |
 * | levels| (T, Σ L_j)| Σ r [x_nj = l], categorical covariates          | Dirichlet α_kjl     |
 *
 * The covariate factors other than the Normal-Wishart (lib/model/covariates/) append their blocks
 * after syy, so a model without them has exactly the layout it had before they existed.
 */
export interface Layout {
  count: number;
  sx: number;
  sxx: number;
  suu: number;
  syu: number;
  syy: number;
  /** The categorical covariates' block, or -1 when the model has none. */
  levels: number;
  length: number;
  /** Every block in order: permutations, pruning and moves go through these. */
  blocks: Block[];
}

export interface Block {
  name: 'count' | 'sx' | 'sxx' | 'suu' | 'syu' | 'syy' | 'levels';
  offset: number;
  /** Values per component. */
  width: number;
  /** n when each component's values are a symmetric n × n matrix (stored whole, packed on the wire). */
  symmetric?: number;
}

export function layoutOf(spec: LayoutSpec): Layout {
  const { T, D, P } = spec;
  const widths: Omit<Block, 'offset'>[] = [
    { name: 'count', width: 1 },
    { name: 'sx', width: D },
    { name: 'sxx', width: D * D, symmetric: D },
    { name: 'suu', width: P * P, symmetric: P },
    { name: 'syu', width: P },
    { name: 'syy', width: familyOf(spec.family).extraWidth(spec) },
    ...covariateBlocks(spec),
  ];
  let offset = 0;
  const blocks = widths.map((b) => {
    const block = { ...b, offset };
    offset += T * b.width;
    return block;
  });
  const [count, sx, sxx, suu, syu, syy] = blocks.map((b) => b.offset);
  const levels = blocks.find((b) => b.name === 'levels')?.offset ?? -1;
  return { count, sx, sxx, suu, syu, syy, levels, length: offset, blocks };
}

/** ν0 = D + extra degrees of freedom, at least D (the Wishart needs ν0 > D − 1). */
export function priorDegreesOfFreedom(spec: ModelSpec): number {
  return spec.D + spec.priors.extraDegreesOfFreedom;
}

/** α0 of the finite Dirichlet: the configured value or 1/T. */
export function dirichletConcentration(spec: ModelSpec): number {
  return spec.priors.dirichletConcentration ?? 1 / spec.T;
}

/**
 * The diagonal of Λ0, the regression coefficients' prior precision, shape (P): the slopes'
 * `coefficientPrecision`, the intercept's (last) `interceptPrecision`.
 */
export function coefficientPriorPrecision(spec: Pick<ModelSpec, 'P' | 'priors'>): Float64Array {
  const c = new Float64Array(spec.P).fill(spec.priors.coefficientPrecision);
  c[spec.P - 1] = spec.priors.interceptPrecision;
  return c;
}

/**
 * λ0, the prior in natural coordinates (m0 = 0, θ0 = 0):
 * sxx = W0⁻¹ = ν0 s I, suu = Λ0 = diag(c) (coefficientPriorPrecision), syy the family's (gaussian: 2 b0).
 */
export function priorCoordinates(spec: ModelSpec): Float64Array {
  const { T, D, P, priors } = spec;
  const layout = layoutOf(spec);
  const lambda0 = new Float64Array(layout.length);
  const wishartInverse = priorDegreesOfFreedom(spec) * priors.clusterVariance;
  const extra = familyOf(spec.family).priorExtra(priors, spec);
  const c = coefficientPriorPrecision(spec);
  for (let k = 0; k < T; k++) {
    for (let i = 0; i < D; i++) lambda0[layout.sxx + k * D * D + i * D + i] = wishartInverse;
    for (let i = 0; i < P; i++) lambda0[layout.suu + k * P * P + i * P + i] = c[i];
    lambda0.set(extra, layout.syy + k * extra.length);
  }
  for (const factor of covariateFactorsOf(spec)) factor.prior(spec, lambda0, layout);
  return lambda0;
}

/**
 * The model of a configuration with D numeric clustering and P regression inputs. `regressionColumns`
 * (the column each input of u but the intercept comes from; specOfPlan) places config.sharedCoefficients
 * in u (a categorical column's every treatment-coded input); needed when the config shares any.
 * `levels`: the level counts of the categorical clustering covariates; `classes`: the class count
 * of a categorical target (multinomial).
 */
export function specFromConfig(
  config: ModelConfig,
  D: number,
  P: number,
  regressionColumns?: readonly string[],
  levels: readonly number[] = [],
  classes?: number,
): ModelSpec {
  const shared = sharedPositions(config.sharedCoefficients ?? [], regressionColumns, P);
  return {
    ...(shared.length ? { shared } : {}),
    T: config.components,
    D: config.covariateModel ? D : 0,
    P,
    family: config.family,
    weights: config.weights,
    // Covariate relevance (inference/relevance.ts) may leave no clustering covariate: conditional-only.
    covariateModel: config.covariateModel && D > 0,
    priors: config.priors,
    ...(config.covariateModel && levels.length > 0 ? { levels: [...levels] } : {}),
    ...(classes !== undefined ? { classes } : {}),
  };
}

function sharedPositions(names: readonly string[], r: readonly string[] | undefined, P: number): number[] {
  if (names.length === 0) return [];
  if (!r) throw new Error('specFromConfig: shared coefficients need the regression columns');
  const positions = names.flatMap((name) => {
    const at = r.flatMap((column, i) => (column === name ? [i] : []));
    if (at.length === 0) throw new ClusterwiseError(`shared coefficient "${name}" is not one of the regression columns (${r.join(', ') || 'none'})`);
    return at;
  });
  if (P !== r.length + 1) throw new Error(`specFromConfig: P = ${P} with ${r.length} regression columns`);
  return positions.sort((a, b) => a - b);
}

/** The positions in u of the per-component coefficients (every one but the shared; the intercept last). */
export function ownPositions(spec: Pick<ModelSpec, 'P' | 'shared'>): number[] {
  const shared = new Set(spec.shared ?? []);
  return Array.from({ length: spec.P }, (_, i) => i).filter((i) => !shared.has(i));
}

/** L_j of each categorical clustering column of a plan (ModelSpec.levels). */
export function levelCounts(plan: ColumnPlan): number[] {
  return (plan.xcSlot ?? []).map((s) => plan.select[s].levels!.length);
}

/** The model of a run from its config and column plan (numeric x, regression inputs, categorical levels, the target's classes). */
export function specOfPlan(config: ModelConfig, plan: ColumnPlan): ModelSpec {
  const regressionColumns = plan.rSlot.map((slot) => plan.select[slot].column);
  const spec = specFromConfig(config, plan.x.length, plan.r.length + 1, regressionColumns, levelCounts(plan), plan.select[plan.ySlot].levels?.length);
  const covariateInputs = plan.x.map((column) => plan.r.indexOf(column)); // r names a categorical input column=level
  return spec.covariateModel && covariateInputs.some((j) => j >= 0) ? { ...spec, covariateInputs } : spec;
}

/**
 * Symmetric blocks (sxx: T×D×D, suu: T×P×P) stored as their upper triangles, row by row: what
 * statistics and coordinates take on the wire and in the object store (half the bytes at large D).
 * Every other block is copied as it is. `unpackSymmetric(spec, packSymmetric(spec, v))` equals v
 * for every v whose symmetric blocks are symmetric.
 */
export function packedLength(spec: LayoutSpec): number {
  return layoutOf(spec).length - symmetricBlocks(spec).reduce((s, b) => s + (spec.T * b.n * (b.n - 1)) / 2, 0);
}

function symmetricBlocks(spec: LayoutSpec): { offset: number; n: number; end: number }[] {
  return layoutOf(spec).blocks.flatMap((b) => (b.symmetric === undefined ? [] : [{ offset: b.offset, n: b.symmetric, end: b.offset + spec.T * b.width }]));
}

export function packSymmetric(spec: LayoutSpec, full: Float64Array): Float64Array {
  const out = new Float64Array(packedLength(spec));
  let from = 0;
  let to = 0;
  for (const { offset, n, end } of symmetricBlocks(spec)) {
    out.set(full.subarray(from, offset), to);
    to += offset - from;
    for (let base = offset; base < end; base += n * n)
      for (let i = 0; i < n; i++) for (let j = i; j < n; j++) out[to++] = full[base + i * n + j];
    from = end;
  }
  out.set(full.subarray(from), to);
  return out;
}

export function unpackSymmetric(spec: LayoutSpec, packed: Float64Array): Float64Array {
  const full = new Float64Array(layoutOf(spec).length);
  if (packed.length !== packedLength(spec)) throw new RangeError(`packed statistics: expected ${packedLength(spec)} values, got ${packed.length}`);
  let from = 0;
  let to = 0;
  for (const { offset, n, end } of symmetricBlocks(spec)) {
    full.set(packed.subarray(from, from + offset - to), to);
    from += offset - to;
    for (let base = offset; base < end; base += n * n)
      for (let i = 0; i < n; i++)
        for (let j = i; j < n; j++) {
          const v = packed[from++];
          full[base + i * n + j] = v;
          full[base + j * n + i] = v;
        }
    to = end;
  }
  full.set(packed.subarray(from), to);
  return full;
}
