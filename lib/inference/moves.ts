/**
 * Merge and delete moves for batch VB (Hughes & Sudderth 2013, "Memoized online variational
 * inference for Dirichlet process mixture models", §4; the merge/delete moves of bnpy).
 *
 * Batch VB only climbs to the nearest local optimum: a cluster split over two components, or a
 * component holding a few stray rows, stays. A move proposes a different state built from the
 * sweep's own statistics S (shape: the layout of spec.ts), evaluates it with one local step, and is
 * kept only when the ELBO rises. Everything here is pure: (spec, GlobalState, S, ELBO) in,
 * candidate states out; the caller runs the local step.
 *
 * - **Merge j ← k**: the statistics are additive in r, so r_n,j+k = r_nj + r_nk has statistics
 *   S_j + S_k; the candidate is λ0 + S' (S' = S with S_j + S_k in j and 0 in k), q(α) updated,
 *   components sorted by size. Pairs are ranked by an upper bound on the merge's ELBO gain (below);
 *   only pairs with a positive bound are proposed.
 * - **Delete j**: S' = S with S_j = 0, so component j returns to its prior and is pruned by the
 *   local step (vb.ts PRUNE_BELOW_ROWS); its rows are re-explained by the others in the
 *   evaluating local step. Proposed for the smallest active components, smallest first.
 *
 * **The bound.** For statistics S and λ = λ0 + S (the globals' optimum given r), the ELBO is
 * `L(r) = J(S) + H(r)` with `J(S) = Σ_k E_q[ln p(x, y, z = k | ·)]·(from S_k) − KL(q ‖ p)`, linear
 * in S given λ (PRML 10.71–10.74 for the covariate, weight and KL terms; the gaussian response's
 * `Σ r [E ln τ/2 − ½ ln 2π − ½ (E τ (y − θᵀu)² + uᵀΛ⁻¹u)]` is a function of S_k too), and
 * `H(r) = −Σ r ln r` the entropy of q(z). Merging j and k lowers H by
 * `Σ_n (r_nj + r_nk) h(r_nj / (r_nj + r_nk)) ∈ [0, (N_j + N_k) ln 2]` (h the binary entropy), so
 * `ΔL ≤ J(S') − J(S)`, the score. The per-row entropies are not available from the pipeline's
 * sums (Hughes & Sudderth cache them per pair; we evaluate the candidate instead), hence a bound
 * for ranking, and the ELBO of the local step for the decision. A response family whose terms
 * the statistics do not determine (bernoulli: the Jaakkola–Jordan terms depend on per-row ξ; it
 * has no `expectedLogLik`) is left out of J (the ranking then uses covariates, weights and KL only).
 * With shared coefficients (docs/model.md §15) the components' terms are those of their untied
 * regressions, so the score ranks but no longer bounds.
 *
 * ## Contract for a caller that owns the sweeps (the aggregator)
 *
 * After a batch sweep that evaluated state λ_s (ELBO L_s, total statistics S_s over all rows):
 *
 * ```ts
 * const proposals = proposeMoves(spec, { state: λ_s, stats: S_s, elbo: L_s, previousElbo: L_{s−1} }, { exclude });
 * ```
 *
 * 1. `proposals` is ordered best first and is empty unless the sweep is near a local optimum
 *    (`|L_s − L_{s−1}| ≤ MOVE_TOLERANCE·|L_s|`, or `previousElbo` undefined is treated as not near).
 *    Each proposal's `state` is a complete GlobalState (λ and q(α)) to publish as the next version
 *    *instead of* `batchUpdate(spec, λ_s, S_s)`; its `key` names it ('merge:j+k', 'delete:j', indices
 *    of λ_s).
 * 2. Sweep the candidate (all shards, as any batch sweep) to get its ELBO L_c and statistics S_c.
 * 3. `acceptMove(L_s, L_c)` true: keep it; (λ_c, L_c, S_c) is now the current sweep (trace it as a
 *    batch sweep; convergence is judged against L_s as usual, so an accepted move never reads as
 *    converged unless it changed nothing) and clear `exclude`.
 *    false: revert to λ_s, add the key to `exclude`, publish `batchUpdate(spec, λ_s, S_s)` and go on
 *    (the candidate sweep is spent; L_c must not enter the trace).
 * 4. At convergence, before stopping: if `proposeMoves` returns something not in `exclude`, try it;
 *    `converged: true` only when no proposal is left or all were rejected.
 *
 * The ELBO of the accepted states is then non-decreasing (batch VB's own steps are monotone).
 * `batchVb` (vb.ts, option `propose`) is the same loop on in-memory batches.
 */
import { derive, klDivergence, klWeights, sortBySize, weightedScatter, type Derived, type GlobalState } from '../model/posterior.js';
import { covariateFactorsOf } from '../model/covariates/index.js';
import { familyOf } from '../model/families/index.js';
import { layoutOf, priorCoordinates, type ModelSpec } from '../model/spec.js';
import { LN_2PI } from '../math/special.js';
import { PRUNE_BELOW_ROWS, withUpdatedAlpha } from './vb.js';

/** Moves are proposed once the sweep's relative ELBO change is below this (near a local optimum). */
export const MOVE_TOLERANCE = 1e-4;

/**
 * A candidate must beat the current ELBO by this much, relative: it keeps float32 rounding of the
 * local step (about 2·10⁻⁸ relative on the 1M-row benchmark) from accepting a move that changes nothing.
 */
export const MOVE_MARGIN = 1e-7;

export interface MoveProposal {
  /** 'merge:j+k' (k folded into j) or 'delete:j', indices of the state proposed from. */
  key: string;
  kind: 'merge' | 'delete';
  /** The candidate: λ0 + S' and q(α) updated, sorted by size. */
  state: GlobalState;
  /** Merges: the upper bound J(S') − J(S) on the ELBO gain; deletes: −N_j. */
  score: number;
}

export interface SweepResult {
  /** The state the sweep evaluated. */
  state: GlobalState;
  /** The sweep's total statistics S over all rows (layout of spec.ts). */
  stats: Float64Array;
  elbo: number;
  /** The ELBO of the sweep before; undefined for the first sweep (then nothing is proposed). */
  previousElbo?: number;
}

export interface MoveOptions {
  /** At most this many merge proposals. @default 3 */
  maxMerges?: number;
  /** At most this many delete proposals. @default 2 */
  maxDeletes?: number;
  /** Delete only components with N_j below this share of the rows. @default 0.05 */
  deleteBelowShare?: number;
  /** Keys rejected since the last accepted move: not proposed again. */
  exclude?: ReadonlySet<string>;
  /** Propose even when the sweep is not near a local optimum. @default false */
  force?: boolean;
}

/** Keep a move when the candidate's ELBO beats the current one (by MOVE_MARGIN, relative). */
export function acceptMove(currentElbo: number, candidateElbo: number): boolean {
  return candidateElbo > currentElbo + MOVE_MARGIN * Math.abs(currentElbo);
}

/**
 * J(S) for λ = λ0 + S: Σ_k E_q[ln p(rows of k, z = k | globals)] from the statistics, minus
 * KL(q ‖ p) of the globals. The ELBO minus the entropy of q(z) (module header).
 */
export function expectedLogJoint(spec: ModelSpec, state: GlobalState, stats: Float64Array): number {
  const d = derive(spec, state);
  let j = -klDivergence(d, state);
  for (let k = 0; k < spec.T; k++) j += componentLogJoint(d, stats, k);
  return j;
}

/** Σ_n r_nk (E ln π_k + E ln p(x_n | k) + E ln p(y_n | u_n, k)) from S_k (PRML 10.71–10.72). */
function componentLogJoint(d: Derived, stats: Float64Array, k: number): number {
  const { spec, layout } = d;
  const { D } = spec;
  const n = stats[layout.count + k];
  if (n <= 0) return 0;
  let s = n * d.eLnPi[k];
  if (spec.covariateModel && D > 0) {
    // Σ r [½ E ln|Λ| − D/2 ln 2π − ½ (D/β + ν (x − m)ᵀ W (x − m))]  (PRML 10.64)
    const w = d.wishart.subarray(k * D * D, (k + 1) * D * D);
    const m = d.mean.subarray(k * D, (k + 1) * D);
    const sx = stats.subarray(layout.sx + k * D, layout.sx + (k + 1) * D);
    const sxx = stats.subarray(layout.sxx + k * D * D, layout.sxx + (k + 1) * D * D);
    const scatter = weightedScatter(w, D, m, n, sx, sxx);
    s += n * (0.5 * d.eLnDetLambda[k] - (D / 2) * LN_2PI - D / (2 * d.beta[k])) - 0.5 * d.nu[k] * scatter;
  }
  for (const factor of covariateFactorsOf(spec)) s += factor.expectedLogLik(spec, d.lambda, layout, stats, k);
  const family = familyOf(spec.family);
  if (family.expectedLogLik) s += family.expectedLogLik(d, stats, k);
  return s;
}

/**
 * C_k: component k's share of J, Σ_n r_nk (E ln p(x_n | k) + E ln p(y_n | u_n, k)) minus the KL of
 * its covariate and response factors, with λ_k = λ0 + S_k (S_k + S_plus when `plus` is given: the
 * merged component); computed as a one-component model (whose weight terms vanish: E ln π = 0
 * and a zero weights KL).
 */
function componentTerm(spec: ModelSpec, stats: Float64Array, k: number, plus?: number): number {
  // With shared coefficients J does not split by component (β ties them): the terms are those of
  // the untied components, a ranking heuristic; the decision is still the candidate's evaluated ELBO.
  const one: ModelSpec = { ...spec, T: 1, shared: [] };
  const layout = layoutOf(spec);
  const small = layoutOf(one);
  const statsK = new Float64Array(small.length);
  layout.blocks.forEach(({ offset, width }, b) => {
    for (let i = 0; i < width; i++)
      statsK[small.blocks[b].offset + i] = stats[offset + k * width + i] + (plus === undefined ? 0 : stats[offset + plus * width + i]);
  });
  if (statsK[small.count] <= 0) return 0;
  return expectedLogJoint(one, stateFromStats(one, null, statsK), statsK);
}

/**
 * W: the weights' share of J, Σ_k N_k E ln π_k − KL of the weights (and of q(α)), for counts N in
 * the order sortBySize gives them. Computed on a model with the counts alone (no covariates, a
 * one-dimensional response at its prior).
 */
function weightsTerm(spec: ModelSpec, alpha: GlobalState['alpha'], counts: number[]): number {
  const bare: ModelSpec = { ...spec, D: 0, P: 1, covariateModel: false, shared: [], levels: undefined };
  const layout = layoutOf(bare);
  const stats = new Float64Array(layout.length);
  stats.set(counts.slice().sort((a, b) => b - a), layout.count);
  const state = stateFromStats(bare, alpha, stats);
  const d = derive(bare, state);
  let w = -klWeights(d, state);
  for (let k = 0; k < spec.T; k++) if (stats[layout.count + k] > 0) w += stats[layout.count + k] * d.eLnPi[k];
  return w;
}

/** S with the statistics of `from` added into `into` and `from` emptied (or just emptied). */
function moveStats(spec: ModelSpec, stats: Float64Array, from: number, into: number | null): Float64Array {
  const out = stats.slice();
  for (const { offset, width } of layoutOf(spec).blocks)
    for (let i = 0; i < width; i++) {
      if (into !== null) out[offset + into * width + i] += out[offset + from * width + i];
      out[offset + from * width + i] = 0;
    }
  return out;
}

/** λ0 + S, q(α) re-optimized, sorted by size: the state a move publishes. */
function stateFromStats(spec: ModelSpec, alpha: GlobalState['alpha'], stats: Float64Array): GlobalState {
  const lambda = priorCoordinates(spec);
  for (let i = 0; i < lambda.length; i++) lambda[i] += stats[i];
  return sortBySize(spec, withUpdatedAlpha(spec, { lambda, alpha }));
}

/**
 * Merge and delete candidates after a sweep, best first (see the module header for the contract).
 * Empty unless the sweep is near a local optimum (or `force`).
 */
export function proposeMoves(spec: ModelSpec, sweep: SweepResult, options: MoveOptions = {}): MoveProposal[] {
  const near =
    sweep.previousElbo !== undefined && Math.abs(sweep.elbo - sweep.previousElbo) <= MOVE_TOLERANCE * Math.abs(sweep.elbo);
  if (!near && !options.force) return [];
  const exclude = options.exclude ?? new Set<string>();
  const layout = layoutOf(spec);
  const { stats } = sweep;
  const counts = Array.from({ length: spec.T }, (_, k) => stats[layout.count + k]);
  const rows = counts.reduce((s, c) => s + c, 0);
  const active = counts.flatMap((c, k) => (c >= PRUNE_BELOW_ROWS ? [k] : []));
  if (active.length < 2) return [];

  // J(S) = W(counts) + Σ_k C_k(S_k) (expectedLogJoint split by factor); a merge changes C_j, C_k and W.
  const own = active.map((k) => componentTerm(spec, stats, k));
  const ownOf = new Map(active.map((k, i) => [k, own[i]]));
  const baseline = weightsTerm(spec, sweep.state.alpha, counts);
  const merges: Omit<MoveProposal, 'state'>[] = [];
  for (let a = 0; a < active.length; a++)
    for (let b = a + 1; b < active.length; b++) {
      // Fold the smaller into the larger.
      const [into, from] = counts[active[a]] >= counts[active[b]] ? [active[a], active[b]] : [active[b], active[a]];
      const key = `merge:${into}+${from}`;
      if (exclude.has(key)) continue;
      const mergedCounts = counts.slice();
      mergedCounts[into] += mergedCounts[from];
      mergedCounts[from] = 0;
      const score =
        componentTerm(spec, stats, into, from) - ownOf.get(into)! - ownOf.get(from)! +
        weightsTerm(spec, sweep.state.alpha, mergedCounts) - baseline;
      if (score > 0) merges.push({ key, kind: 'merge', score });
    }
  merges.sort((x, y) => y.score - x.score);

  const deletes: MoveProposal[] = active
    .filter((k) => counts[k] < (options.deleteBelowShare ?? 0.05) * rows && !exclude.has(`delete:${k}`))
    .sort((x, y) => counts[x] - counts[y])
    .slice(0, options.maxDeletes ?? 2)
    .map((k) => ({
      key: `delete:${k}`,
      kind: 'delete' as const,
      state: stateFromStats(spec, sweep.state.alpha, moveStats(spec, stats, k, null)),
      score: -counts[k],
    }));
  const chosen = merges.slice(0, options.maxMerges ?? 3).map((m) => {
    const [into, from] = m.key.slice('merge:'.length).split('+').map(Number);
    return { ...m, state: stateFromStats(spec, sweep.state.alpha, moveStats(spec, stats, from, into)) };
  });
  return [...chosen, ...deletes];
}
