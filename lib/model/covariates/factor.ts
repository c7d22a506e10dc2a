/**
 * The covariate-factor seam (docs/model.md §16): the model is an allocation model times covariate
 * factors times one response family. A covariate factor is one file behind this interface, named
 * in the registry (index.ts); the generic code (spec.ts, posterior.ts, the kernels, init.ts,
 * moves.ts, summary.ts, predict.ts) goes through it and never branches on a factor's name.
 *
 * A factor owns one block of the natural coordinates λ (and of the statistics S, same layout):
 * `width` values per component, λ = λ0 + S (conjugate). It reads its own columns of a row, given
 * to it as the row's codes (`codes[at …]`, Batch.categories for the categorical factor).
 *
 * The Normal-Wishart factor of the numeric covariates predates the seam and still lives in
 * posterior.ts and the kernels (fused into the float32 kernel's matrix products); it is the next
 * to move behind this interface.
 */
import type { Layout, LayoutSpec, ModelSpec } from '../spec.js';

/** A factor's block in the layout (spec.ts Block without its offset). */
export interface FactorBlock {
  name: 'levels';
  width: number;
}

export interface CovariateFactor {
  readonly name: string;
  /** Its block of the natural coordinates, or null when the spec has none of its columns. */
  block(spec: LayoutSpec): FactorBlock | null;
  /** Writes λ0 of its block, every component, into `lambda0` (the prior). */
  prior(spec: ModelSpec, lambda0: Float64Array, layout: Layout): void;
  /**
   * Derived parameters the local step needs, shape (T, width): its additive term of ln ρ_nk is
   * logLik(table, k, …), a sum of this table's entries.
   */
  local(spec: ModelSpec, lambda: Float64Array, layout: Layout): Float64Array;
  /** Its additive term of ln ρ_nk for the row whose codes start at codes[at]. */
  logLik(spec: ModelSpec, table: Float64Array, k: number, codes: Int32Array, at: number): number;
  /** Adds r × the row's sufficient statistics into component k's block (stats[blockAt …]); r = 1: hard assignments (init). */
  accumulate(spec: ModelSpec, codes: Int32Array, at: number, r: number, stats: Float64Array, blockAt: number): void;
  /** KL(q ‖ p) of the factor summed over components. */
  kl(spec: ModelSpec, lambda: Float64Array, layout: Layout): number;
  /** Σ_n r_nk E_q[ln p(x_n | k)] from component k's statistics (moves.ts's bound J(S)). */
  expectedLogLik(spec: ModelSpec, lambda: Float64Array, layout: Layout, stats: Float64Array, k: number): number;
  /** ln p(x_new | k, data), the posterior predictive of a new row's columns under component k (predict's p(z | x)). */
  logPredictive(spec: ModelSpec, lambda: Float64Array, layout: Layout, k: number, codes: Int32Array, at: number): number;
  /** Plug-in Σ_n r_nk ln p(x_n | φ̂_k) at the posterior means, from the statistics, and its free parameters per component (summary.ts criteria). */
  plugIn: {
    logLik(spec: ModelSpec, lambda: Float64Array, layout: Layout, stats: Float64Array, k: number): number;
    parameters(spec: ModelSpec): number;
  };
  /**
   * Component k's summary in data units, by column then level (categorical: E[φ_kjl]);
   * `names` are the factor's columns and their levels, in the spec's order.
   */
  summary(
    spec: ModelSpec,
    lambda: Float64Array,
    layout: Layout,
    k: number,
    names: readonly { column: string; levels: readonly string[] }[],
  ): Record<string, Record<string, number>>;
}
