/**
 * The fit loop's building blocks, shared by every runner: evaluate the local step over batches,
 * form the ELBO, and apply the batch (CAVI) or stochastic (SVI) update.
 */
import type { Batch, Kernel } from '../kernel/types.js';
import {
  batchCoordinates,
  derive,
  klDivergence,
  localParams,
  naturalGradientStep,
  updateAlpha,
  type GlobalState,
  type LocalParams,
} from '../model/posterior.js';
import { layoutOf, type ModelSpec } from '../model/spec.js';

/** Statistics summed over batches, with the rows' share of the ELBO. */
export interface BatchSums {
  stats: Float64Array;
  logLik: number;
  rows: number;
}

export function emptySums(spec: ModelSpec): BatchSums {
  return { stats: new Float64Array(layoutOf(spec).length), logLik: 0, rows: 0 };
}

/** Add b into a (float64; the order of addition does not matter beyond rounding). */
export function addSums(a: BatchSums, b: BatchSums): BatchSums {
  for (let i = 0; i < a.stats.length; i++) a.stats[i] += b.stats[i];
  a.logLik += b.logLik;
  a.rows += b.rows;
  return a;
}

export function paramsFor(spec: ModelSpec, state: GlobalState): LocalParams {
  return localParams(derive(spec, state));
}

/** Run the local step over prepared batches and sum what it returns. */
export function localSums<P>(kernel: Kernel<P>, params: LocalParams, prepared: { n: number; data: P }[]): BatchSums {
  const sums = emptySums(params.spec);
  for (const batch of prepared) {
    const result = kernel.localStep(params, batch.data);
    addSums(sums, { stats: result.stats, logLik: result.logLik, rows: batch.n });
  }
  return sums;
}

/** ELBO of a state whose local step gave `logLik` (the logsumexp terms): Σ logsumexp − KL. */
export function elboOf(spec: ModelSpec, state: GlobalState, logLik: number): number {
  return logLik - klDivergence(derive(spec, state), state);
}

/** After λ changes, q(α) is re-optimized given the new sticks (a coordinate-ascent step). */
export function withUpdatedAlpha(spec: ModelSpec, state: GlobalState): GlobalState {
  if (!state.alpha) return state;
  return { lambda: state.lambda, alpha: updateAlpha(spec, derive(spec, state)) };
}

/** CAVI: λ ← λ0 + S(all rows), then q(α). */
export function batchUpdate(spec: ModelSpec, state: GlobalState, stats: Float64Array): GlobalState {
  return withUpdatedAlpha(spec, { lambda: batchCoordinates(spec, stats), alpha: state.alpha });
}

/**
 * SVI: λ ← (1 − ρ) λ + ρ (λ0 + (N / |B|) S_B), then q(α) (Hoffman et al. 2013).
 * `rows` is |B| (summed over the folded messages), `totalRows` is N.
 */
export function sviUpdate(
  spec: ModelSpec,
  state: GlobalState,
  stats: Float64Array,
  rows: number,
  totalRows: number,
  rho: number,
): GlobalState {
  const lambda = naturalGradientStep(spec, state.lambda, stats, totalRows / rows, rho);
  return withUpdatedAlpha(spec, { lambda, alpha: state.alpha });
}

/** Robbins–Monro step size ρ_t = (t + τ)^(−κ). */
export function stepSize(t: number, delay: number, forgettingRate: number): number {
  return Math.pow(t + delay, -forgettingRate);
}

/** Whole-data batch VB on in-memory batches, for data that fits one machine and for tests. */
export function batchVb<P>(
  spec: ModelSpec,
  initial: GlobalState,
  kernel: Kernel<P>,
  prepared: { n: number; data: P }[],
  options: { maxIterations: number; tolerance: number; onIteration?: (iteration: number, elbo: number) => void },
): { state: GlobalState; elbo: number; trace: number[]; converged: boolean } {
  // The returned state is always the one whose ELBO was evaluated last.
  let state = initial;
  const trace: number[] = [];
  for (let it = 0; ; it++) {
    const sums = localSums(kernel, paramsFor(spec, state), prepared);
    const elbo = elboOf(spec, state, sums.logLik);
    trace.push(elbo);
    options.onIteration?.(it, elbo);
    const converged = it > 0 && Math.abs(elbo - trace[it - 1]) <= options.tolerance * Math.abs(elbo);
    if (converged || it + 1 >= options.maxIterations) return { state, elbo, trace, converged };
    state = batchUpdate(spec, state, sums.stats);
  }
}
