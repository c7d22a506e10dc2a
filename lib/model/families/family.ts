/**
 * The response-family seam (docs/model.md §14): the distribution of the target y given the
 * regression inputs u = [r; 1] and the component k, one file per family behind this interface,
 * named in the registry (index.ts). Nothing outside a family's file branches on its name.
 *
 * Scope: every family here keeps a Gaussian posterior over each component's P coefficients θ_k,
 * in the λ blocks suu (Λ_k, P × P) and syu (h_k = Λ_k θ_k, P); what they share is in
 * coefficients.ts. A family adds `extraWidth` coordinates of its own per component (block syy)
 * and sees a row of component k only through
 *
 *   η = θ_kᵀu,   spread = uᵀΛ_k⁻¹u,   y,   o (the row's offset; 0 without one).
 *
 * Its statistics are Σ_n w_uu u uᵀ into suu, Σ_n w_u u into syu and its own sums into syy, with
 * weights from the row and r_nk: exactly the shape of a conjugate update (gaussian), of a
 * quadratic bound refreshed at the local step (bernoulli, Jaakkola–Jordan), or of a
 * natural-gradient step on the exact expected log-likelihood (a Gaussian q(θ) and a
 * non-conjugate likelihood, Khan & Lin 2017).
 */
import type * as tfc from '@tensorflow/tfjs-core';
import type { Priors } from '../../config.js';
import type { ColumnKind } from '../../data/csv.js';
import type { Standardization } from '../../data/dataset.js';
import type { ComponentSummary } from '../summary.js';
import type { Derived, LocalParams } from '../posterior.js';
import type { Layout, ModelSpec } from '../spec.js';
import type { SharedDerived } from './shared.js';

/** How the target column is read, checked and scaled. */
export interface TargetSpec {
  /** What the CSV parser reads it as ('binary': 0/1/true/false; 'count': a whole number ≥ 0); rows with other values are skipped. */
  kind: ColumnKind;
  /** Centred and scaled by the sample's mean and deviation, like the regression columns. */
  standardized: boolean;
}

/** E[u] (P) and E[u uᵀ] (P × P) of a row under q(x_m | z = k) (lib/kernel/missing.ts). */
export interface InputMoments {
  eu: Float64Array;
  euu: Float64Array;
}

/** A row of component k as a family sees it (the reference path; `memo` carries per-k values from logLik to weights). */
export interface ReferenceRows {
  /**
   * The family's additive term of ln ρ_nk: its E_q[ln p(y | u, k)], or a lower bound on it that
   * is tight at the current q (PRML 10.152). `local` is LocalParams.response (T × localWidth),
   * component k's at k · localWidth. `u` is the row's regression inputs (P), for a family whose
   * predictors are not the one η (multinomial: C − 1 of them).
   */
  logLik(local: Float64Array, k: number, eta: number, spread: number, y: number, offset: number, memo: Float64Array, u: Float64Array): number;
  /** The row's weights given r = r_nk: out[0] multiplies u uᵀ (suu), out[1] multiplies u (syu). */
  weights(local: Float64Array, k: number, r: number, eta: number, y: number, offset: number, memo: Float64Array, out: Float64Array): void;
  /**
   * Adds the row's share of the family's own block (syy) of component k at stats[at …]. `local`
   * is LocalParams.response, or null under a hard assignment before any posterior exists (hardWeights).
   */
  extra?(r: number, y: number, stats: Float64Array, at: number, u: Float64Array, local: Float64Array | null, k: number): void;
  /**
   * logLik as a quadratic in the inputs, c + bᵀu − ½ uᵀAu for the row's y, with A (P × P) and b (P)
   * written here and c returned: exactly logLik(u) (gaussian), or, with `tightened`, a lower bound
   * on it whose local parameter is tightened at the moments `at` (E[u], E[u uᵀ]) of the current
   * q(x_m | z = k) (bernoulli: the Jaakkola–Jordan ξ, kept in memo[k] for weights(); multinomial:
   * Böhning's ψ = Θ_k E[u]). Only for a family whose weights() do not depend on η, and whose
   * extra() is linear in u given that parameter (it is then given E[u]), so that a row's expected
   * statistics are its weights times E[u], E[u uᵀ]. With it, a missing regression input that is
   * also a clustering covariate is integrated out (lib/kernel/missing.ts, docs/model.md §18);
   * without it such rows are skipped.
   */
  inputQuadratic?(params: LocalParams, k: number, y: number, a: Float64Array, b: Float64Array, at: InputMoments, memo: Float64Array): number;
  /** inputQuadratic is a bound tightened at q(x_m | z = k): MissingCells alternates the two until the bound settles. */
  tightened?: boolean;
  /**
   * logLik reads u and the family's own local parameters, not η = θ_kᵀu and the spread (multinomial:
   * C − 1 predictors): the reference path does not form those (they are passed as 0).
   */
  ownPredictors?: boolean;
}

/**
 * What a family's widths may depend on: P and, for a categorical target, its class count
 * (ModelSpec.classes, from the planner's sample like categorical levels).
 */
export type FamilyDims = Pick<ModelSpec, 'P' | 'classes'>;

/** A chunk of rows inside the TensorFlow.js kernel (lib/kernel/tfjs.ts), all float32, all (c, T) unless said. */
export interface FusedChunk {
  /** [u, y] · qu: the columns `columns` wrote, one per component. */
  lin: tfc.Tensor2D;
  /** ‖[u, y] G_k‖², G_k = [C_k s; 0 | qu_k] with s = `spreadScale` (C_k C_kᵀ = Λ_k⁻¹). */
  quad: tfc.Tensor2D;
  /** y, (c, 1). */
  y: tfc.Tensor2D;
  /** o, (c, 1), or null without an offset column. */
  offset: tfc.Tensor2D | null;
  /** The constants c_k of ln ρ (weights, covariates, `columns`' constant), (1, T). */
  bias: tfc.Tensor2D;
}

/** What a family's fused step returns for a chunk: ln ρ (its term plus `bias`) and, given r, its weights. */
export interface FusedTerms {
  lnRho: tfc.Tensor;
  /** Given r (c, T): w (c, T) multiplying u uᵀ; v (c, T) multiplying [u, y] (Σ v [u, y] goes to `finish`); `ee`, optional column sums (T). */
  weights(r: tfc.Tensor2D): { w: tfc.Tensor2D; v: tfc.Tensor2D; ee?: tfc.Tensor };
}

/**
 * The fused TensorFlow.js path of a family (optional: without one, the tfjs kernel runs the
 * reference path on the batch's float32 values).
 */
export interface FusedResponse {
  /**
   * Component k's column qu_k (P + 1 values, multiplying [u, y]), in float64 (rounded once to
   * float32 by the kernel); returns the scale s of C_k in G_k and the family's constant in ln ρ.
   */
  columns(local: LocalParams, k: number, qu: Float64Array): { spreadScale: number; constant: number };
  /** The chunk's ln ρ and weights; runs inside tf.tidy. */
  chunk(tf: typeof tfc, t: FusedChunk): FusedTerms;
  /**
   * Component k's syu (and syy) from the float64 sums over chunks: sumE = Σ v [u, y], (P + 1, T),
   * at [i·T + k]; sumEE = Σ ee. `qu` is the float32 (P + 1, T) matrix the kernel used. suu is
   * already in `stats`.
   */
  finish(qu: Float32Array, k: number, T: number, P: number, sumE: Float64Array, sumEE: number, stats: Float64Array, layout: Layout): void;
  /** Σ over a chunk's rows of the family's terms that do not depend on k, in float64 (added to the log-likelihood). */
  rowConstant?(y: Float32Array, offset: Float32Array | null): number;
}

/** One component's predictive for a new row, mixed over components by p(z | x) (lib/model/predict.ts). */
export interface Predictive {
  /** Columns predict appends after cluster and cluster_probability. The first is the mean; a second is its sd. */
  columns: readonly string[];
  /** A per-component constant the predictive needs (gaussian: the noise's predictive variance). */
  constant(d: Derived, k: number): number;
  /**
   * Adds weight × component k's first two moments of y (standardized scale) to acc[0], acc[1]; a
   * categorical target's (`classes`): its C class probabilities to acc[0 … C). `u` and `parameters`
   * (the row's inputs and component k's `parameters`) for a family whose predictors are not the one η.
   */
  add(acc: Float64Array, weight: number, eta: number, spread: number, offset: number, constant: number, u: Float64Array, parameters: Float64Array): void;
  /** Per-component values add and logDensity need beyond η and the spread (multinomial: Θ_k, its covariance factors); absent: none. */
  parameters?(d: Derived, k: number): Float64Array;
  /**
   * The target is a class label: the accumulator holds the C class probabilities (ModelSpec.classes),
   * `mean` gives the most probable class's index, and predict writes its label as `prediction` and
   * one `probability_<label>` column per class.
   */
  classes?: boolean;
  /** Mean (and, when the family gives one, sd) in data units from the mixed moments. */
  mean(acc: Float64Array, std: Standardization): number;
  sd?(acc: Float64Array, std: Standardization): number;
  /**
   * ln p(y | u, z = k) of an observed y (on the family's scale), for predict's log density and
   * p(z | x, y); at most 0 (a probability). Absent for gaussian, whose Student-t mixture predict
   * handles itself (lib/model/predictive.ts).
   */
  logDensity?(y: number, eta: number, spread: number, offset: number, constant: number, u: Float64Array, parameters: Float64Array): number;
}

export interface ResponseFamily {
  readonly name: string;
  /** One line for --help and the docs. */
  readonly description: string;
  readonly target: TargetSpec;
  /** The linear predictor η takes a per-row offset (config `offset` or `exposure`). */
  readonly acceptsOffset: boolean;
  /** Why the family cannot tie slopes across components (config sharedCoefficients), when it cannot: the config schema refuses them with it. */
  readonly noSharedCoefficients?: string;
  /**
   * λ ← λ0 + S maximizes the ELBO over the globals given the local step's r (conjugate, or a bound
   * made tight at the local step). False: λ0 + S is a natural-gradient step of length 1, which may
   * overshoot; batch sweeps then shorten a step that lowered the ELBO (vb.ts batchVb).
   */
  readonly exactUpdate: boolean;
  /** Link of the mean: what the coefficients are on ("identity", "logit", "log"). */
  readonly link: 'identity' | 'logit' | 'log';
  /** The coefficients' unit in the report's forest plot (per sd of a column). */
  readonly coefficientUnit: string;
  /** What predict gives for y, as the report names it: "mean", "P(y = 1)". */
  readonly predicted: string;
  /** Coordinates of its own per component (block syy), and per-component scalars in Derived.response and LocalParams.response. */
  extraWidth(dims: FamilyDims): number;
  derivedWidth(dims: FamilyDims): number;
  localWidth(dims: FamilyDims): number;

  /** λ0 of the block syy for one component (length extraWidth). */
  priorExtra(priors: Priors, dims: FamilyDims): number[];
  /** Derived.response of component k (length derivedWidth) from λ, the count and θ_k. */
  derive(spec: ModelSpec, lambda: Float64Array, layout: Layout, k: number, count: number, theta: Float64Array, out: Float64Array): void;
  /**
   * With shared coefficients (spec.shared; docs/model.md §15): every coefficient quantity of
   * Derived, the family's Derived.response and q(β) from λ. Absent: the exact joint Gaussian of
   * shared.ts deriveJointShared (right for a family whose only global factor is q(θ)), then derive().
   */
  deriveShared?(spec: ModelSpec, lambda: Float64Array, layout: Layout, count: Float64Array): SharedDerived;
  /** LocalParams.response of component k (length localWidth). */
  local(d: Derived, k: number, out: Float64Array): void;
  /** KL(q ‖ p) of the response factor summed over components, added to `total` (the order of the sum is kept across versions). */
  kl(d: Derived, lambda0: Float64Array, total: number): number;
  /**
   * A row's weights under a hard assignment (r = 1) before any posterior exists: the local step's
   * weights at ξ = 0 (bernoulli) or at a working fit of the row itself (poisson). out as in weights().
   */
  hardWeights(y: number, offset: number, out: Float64Array): void;
  /** The syy block of λ is one this family can have written (predict's consistency check). */
  validExtra(extra: Float64Array): boolean;

  /** The reference path's row terms; a function of the dims for a family whose rows need them (multinomial: C). */
  rows: ReferenceRows | ((dims: FamilyDims) => ReferenceRows);
  fused?: FusedResponse;

  /**
   * Σ_n r_nk E_q[ln p(y_n | u_n, k)] from component k's statistics, when the statistics determine
   * it (moves.ts's bound J(S)); absent when they do not (bernoulli's ξ, poisson's E[e^η]).
   */
  expectedLogLik?(d: Derived, stats: Float64Array, k: number): number;
  /** Plug-in Σ_n r_nk ln p(y_n | θ̂_k, …) from the statistics and its free parameters per component (summary.ts criteria). */
  plugIn?: { logLik(d: Derived, stats: Float64Array, k: number): number; parameters(P: number): number };

  /** The factor multiplying Λ_k⁻¹ in θ_k's marginal covariance (gaussian: b_k / (a_k − 1)). @default 1 */
  coefficientScale?(d: Derived, k: number): number;
  /**
   * A family with several linear predictors per component (multinomial: one per non-reference
   * class): each one's posterior mean (P) and covariance (P, P) on the standardized scale, in class
   * order; summary.ts reports them as the component's `classes`. Absent: the one θ_k of Derived.
   */
  heads?(d: Derived, k: number): { coef: Float64Array; covariance: Float64Array }[];
  /** Adds the family's own fields to a component's summary (gaussian: noiseSd). */
  summarize?(d: Derived, k: number, std: Standardization, out: ComponentSummary): void;
  predictive: Predictive;
  /** The inverse link in data units, for the report's fitted curves. */
  inverseLink(eta: number): number;
  /** The report's measure of fit on the plotted rows (name, value). */
  fit(actual: readonly number[], predicted: readonly number[]): [string, number];
}
