/**
 * The fit loop's building blocks, shared by every runner: evaluate the local step over batches,
 * form the ELBO, and apply the batch (CAVI) or stochastic (SVI) update.
 */
import type { Kernel, LocalStepOptions, LocalStepResult } from '../kernel/types.js';
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
import { familyOf } from '../model/families/index.js';
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

/**
 * Components expected to hold fewer rows than this are left out of the local step: their r_nk is
 * set to 0 rather than computed. That restricts q(z) (the ELBO stays a valid bound, now of the
 * restricted family), and it is what the next update would do anyway up to this many rows: an
 * empty component sits at its prior. Most of a DP's truncation level is such components once
 * the data has chosen its clusters, so this is most of the local step's cost saved.
 */
export const PRUNE_BELOW_ROWS = 1e-6;

/** The components the local step computes: N_k ≥ PRUNE_BELOW_ROWS (at least the largest one). */
export function activeComponents(params: LocalParams): number[] {
  const active: number[] = [];
  let largest = 0;
  for (let k = 0; k < params.spec.T; k++) {
    if (params.count[k] >= PRUNE_BELOW_ROWS) active.push(k);
    if (params.count[k] > params.count[largest]) largest = k;
  }
  return active.length ? active : [largest];
}

/** LocalParams of the `active` components only, as a model with T = active.length. */
export function restrictParams(params: LocalParams, active: number[]): LocalParams {
  const { D, P } = params.spec;
  const pick = (v: Float64Array, width: number) => {
    const out = new Float64Array(active.length * width);
    active.forEach((k, i) => out.set(v.subarray(k * width, (k + 1) * width), i * width));
    return out;
  };
  return {
    spec: { ...params.spec, T: active.length },
    count: pick(params.count, 1),
    logWeight: pick(params.logWeight, 1),
    mean: pick(params.mean, D),
    precisionFactor: pick(params.precisionFactor, D * D),
    covariateConst: pick(params.covariateConst, 1),
    coef: pick(params.coef, P),
    coefCovFactor: pick(params.coefCovFactor, P * P),
    response: pick(params.response, familyOf(params.spec.family).localWidth(params.spec)),
    factors: params.factors.map((table) => pick(table, table.length / params.spec.T)),
  };
}

/** The local step of every kernel, over the active components; results in the full layout. */
export function runLocalStep<P>(kernel: Kernel<P>, params: LocalParams, prepared: P, options: LocalStepOptions = {}): LocalStepResult {
  const active = activeComponents(params);
  const { T } = params.spec;
  if (active.length === T) return kernel.localStep(params, prepared, options);
  const part = kernel.localStep(restrictParams(params, active), prepared, options);
  const full = layoutOf(params.spec);
  const small = layoutOf({ ...params.spec, T: active.length });
  const stats = new Float64Array(full.length);
  active.forEach((k, i) => {
    full.blocks.forEach(({ offset, width }, b) => {
      const from = small.blocks[b].offset;
      stats.set(part.stats.subarray(from + i * width, from + (i + 1) * width), offset + k * width);
    });
  });
  let responsibilities: Float64Array | undefined;
  if (part.responsibilities) {
    const n = part.responsibilities.length / active.length;
    responsibilities = new Float64Array(n * T);
    for (let row = 0; row < n; row++) active.forEach((k, i) => (responsibilities![row * T + k] = part.responsibilities![row * active.length + i]));
  }
  return { stats, logLik: part.logLik, responsibilities };
}

/** Run the local step over prepared batches and sum what it returns. */
export function localSums<P>(kernel: Kernel<P>, params: LocalParams, prepared: { n: number; data: P }[]): BatchSums {
  const sums = emptySums(params.spec);
  for (const batch of prepared) {
    const result = runLocalStep(kernel, params, batch.data);
    addSums(sums, { stats: result.stats, logLik: result.logLik, rows: batch.n });
  }
  return sums;
}

/**
 * A state's local step over in-memory batches and its ELBO, its derived quantities formed once
 * (they give both the kernel's parameters and the KL).
 */
export function evaluateState<P>(spec: ModelSpec, state: GlobalState, kernel: Kernel<P>, prepared: { n: number; data: P }[]): { sums: BatchSums; elbo: number } {
  const derived = derive(spec, state);
  const sums = localSums(kernel, localParams(derived), prepared);
  return { sums, elbo: sums.logLik - klDivergence(derived, state) };
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

/** A candidate state for `batchVb`'s moves, named so a rejected one is not proposed again. */
export interface Candidate {
  key: string;
  state: GlobalState;
}

/**
 * After each evaluated sweep: candidates to try instead of the batch update (moves.ts
 * proposeMoves), given the sweep (its state, statistics, ELBO and the ELBO before) and the keys
 * rejected since the last accepted candidate.
 */
export type Proposer = (
  sweep: { state: GlobalState; stats: Float64Array; elbo: number; previousElbo?: number },
  rejected: ReadonlySet<string>,
) => Candidate[];

/**
 * Whole-data batch VB on in-memory batches, for data that fits one machine and for tests.
 *
 * With `propose`, after every sweep the proposed candidates are evaluated (one local step each) in
 * order, and the first whose ELBO beats the sweep's by `accept` becomes the current state (its
 * local step is the next sweep); otherwise the batch update follows as usual. The trace holds the
 * ELBO of every state that became current, so it never decreases (batch VB's steps are monotone;
 * Hughes & Sudderth 2013, §4). `converged` needs a sweep within tolerance after which no candidate
 * was accepted.
 */
export function batchVb<P>(
  spec: ModelSpec,
  initial: GlobalState,
  kernel: Kernel<P>,
  prepared: { n: number; data: P }[],
  options: {
    maxIterations: number;
    tolerance: number;
    onIteration?: (iteration: number, elbo: number) => void;
    propose?: Proposer;
    accept?: (currentElbo: number, candidateElbo: number) => boolean;
  },
): { state: GlobalState; elbo: number; trace: number[]; converged: boolean; accepted: string[] } {
  // The returned state is always the one whose ELBO was evaluated last.
  let state = initial;
  const trace: number[] = [];
  const accepted: string[] = [];
  const rejected = new Set<string>();
  let { sums, elbo } = evaluateState(spec, state, kernel, prepared);
  for (let it = 0; ; it++) {
    trace.push(elbo);
    options.onIteration?.(it, elbo);
    const previousElbo = it > 0 ? trace[it - 1] : undefined;
    const converged = previousElbo !== undefined && Math.abs(elbo - previousElbo) <= options.tolerance * Math.abs(elbo);
    let moved = false;
    if (options.propose && it + 1 < options.maxIterations) {
      for (const candidate of options.propose({ state, stats: sums.stats, elbo, previousElbo }, rejected)) {
        const { sums: candidateSums, elbo: candidateElbo } = evaluateState(spec, candidate.state, kernel, prepared);
        if ((options.accept ?? ((a, b) => b > a))(elbo, candidateElbo)) {
          [state, sums, elbo, moved] = [candidate.state, candidateSums, candidateElbo, true];
          accepted.push(candidate.key);
          rejected.clear();
          break;
        }
        rejected.add(candidate.key);
      }
    }
    if (moved) continue;
    if (converged || it + 1 >= options.maxIterations) return { state, elbo, trace, converged, accepted };
    if (familyOf(spec.family).exactUpdate) {
      state = batchUpdate(spec, state, sums.stats);
      ({ sums, elbo } = evaluateState(spec, state, kernel, prepared));
      continue;
    }
    // A natural-gradient step (non-conjugate family) may overshoot: halve it, λ + t (λ0 + S − λ),
    // until the ELBO does not fall (it is an ascent direction, so a short enough step rises).
    const step = shortenedStep(spec, state, sums, elbo, (candidate) => evaluateState(spec, candidate, kernel, prepared));
    if (!step) return { state, elbo, trace, converged: true, accepted };
    [state, sums, elbo] = [step.state, step.sums, step.elbo];
  }
}

/** Halvings of a natural-gradient step before batch VB stops at the current state. */
export const MAX_STEP_HALVINGS = 20;

/**
 * The longest of the steps λ + t (λ0 + S − λ), t = 1, ½, ¼, …, whose ELBO is not below `elbo`
 * (then q(α) re-optimized), with its evaluation; undefined when none of MAX_STEP_HALVINGS is.
 */
export function shortenedStep(
  spec: ModelSpec,
  state: GlobalState,
  sums: BatchSums,
  elbo: number,
  evaluate: (candidate: GlobalState) => { sums: BatchSums; elbo: number },
): { state: GlobalState; sums: BatchSums; elbo: number } | undefined {
  for (let h = 0, t = 1; h <= MAX_STEP_HALVINGS; h++, t /= 2) {
    const candidate = sviUpdate(spec, state, sums.stats, 1, 1, t);
    const result = evaluate(candidate);
    if (result.elbo >= elbo) return { state: candidate, ...result };
  }
  return undefined;
}
