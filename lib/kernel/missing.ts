/**
 * The local step of a row with missing numeric clustering covariates (docs/model.md §18), float64.
 *
 * The missing part x_m of a row is a latent variable like z_n. Mean field keeps the structured
 * q(z_n, x_m) = q(z_n) q(x_m | z_n) (Ghahramani & Jordan 1994, in its variational form), and
 * given the globals the optimal q(x_m | z = k) ∝ exp E[ln p(x, y | k)] over q(μ_k, Λ_k) q(θ_k, τ_k).
 * With V_k = E[Λ_k] = ν_k W_k, F_k F_kᵀ = V_k (LocalParams.precisionFactor):
 *
 *   E ln N(x | μ_k, Λ_k⁻¹) = covariateConst_k − ½ (x − m_k)ᵀ V_k (x − m_k)                (PRML 10.64)
 *
 * is quadratic in x_m, and so is the response term of a family with `rows.inputQuadratic`
 * (c + bᵀu − ½ uᵀAu: gaussian's exactly, bernoulli's and multinomial's bounds) when a missing
 * x_i is also input j_i of u (spec.covariateInputs).
 * Their sum, as a function of the d missing values ζ, is const + hᵀζ − ½ ζᵀQζ with
 *
 *   Q = V_mm + Eᵀ A E                                       (d × d; E puts ζ into u)
 *   h = V_mm m_m − V_mo (x_o − m_o) + Eᵀ (b − A u₀)          (d; u₀ = u with its missing inputs 0)
 *   const = covariateConst_k − ½ δ_oᵀV_ooδ_o + δ_oᵀV_om m_m − ½ m_mᵀV_mm m_m [+ c + bᵀu₀ − ½ u₀ᵀAu₀]
 *
 * so q(x_m | k) = N(Q⁻¹h, Q⁻¹) (without a missing input: the conditional of N(m_k, V_k⁻¹), Schur
 * complement), and the row's term of ln ρ_nk, E_q[ln p] + H[q(x_m | k)] at that optimum, is its
 * log-normalizer
 *
 *   ln ρ_nk ∋ const + ½ hᵀQ⁻¹h + (d/2) ln 2π − ½ ln|Q|.
 *
 * Σ_n logsumexp_k ln ρ_nk is then E[ln p(data, z, x_m | globals)] − E[ln q(z, x_m)] exactly, the
 * entropy of q(x_m | z) included, and the statistics are the expected ones, r E[x], r E[x xᵀ] with
 * E[x xᵀ] = E[x]E[x]ᵀ + Cov (and w E[u], w E[u uᵀ] for the response): λ0 + S is the exact global
 * update given q(z, x_m), so batch VB's ELBO still never decreases.
 *
 * A family whose quadratic is a bound with a local parameter (bernoulli's Jaakkola–Jordan ξ,
 * multinomial's Böhning ψ; `rows.tightened`) has that parameter's optimum depend on q(x_m | k),
 * and q's on it: the term alternates the two from q given the covariates alone, each step raising
 * the row's bound, until the bound settles; the term is the bound at that pair, and the weights
 * and the family's own statistics (given E[u]) use its parameter.
 */
import { backSubstitute, cholesky, forwardSubstitute, inverseFromCholesky, logDetFromCholesky, lowerProduct, quadraticForm } from '../math/linalg.js';
import { LN_2PI } from '../math/special.js';
import type { ReferenceRows } from '../model/families/family.js';
import { familyOf, referenceRows } from '../model/families/index.js';
import type { LocalParams } from '../model/posterior.js';
import { InternalError } from '../errors.js';

/** Rounds of tightening a family's bound at q(x_m) (term), at most, and the change of the bound (relative, or absolute below 1) that ends them. */
const MAX_TIGHTENING = 100;
const TIGHTENED = 1e-12;

/** Whether any of the first `count` values of `v` from `at` is missing (NaN). */
export function hasMissing(v: ArrayLike<number>, at: number, count: number): boolean {
  for (let i = 0; i < count; i++) if (Number.isNaN(v[at + i])) return true;
  return false;
}

/**
 * The missing cells of one row at a time: begin(x, u) finds them, term(k, y) gives component k's
 * terms of ln ρ and fills its expected moments (ex, exx, eu, euu at component k).
 */
export class MissingCells {
  /** V_k = ν_k W_k, (T, D, D). */
  private readonly precision: Float64Array;
  private readonly inputQuadratic: ReferenceRows['inputQuadratic'];
  /** The family's quadratic is a bound tightened at q(x_m) (ReferenceRows.tightened). */
  private readonly tightened: boolean;
  /** The row's missing covariates' indices in x (d of them) and their positions in u (−1: not an input). */
  private readonly missing: Int32Array;
  private readonly input: Int32Array;
  private d = 0;
  /** Whether a missing covariate is also a regression input of the row. */
  linked = false;
  private x: ArrayLike<number> = [];
  /** u with its missing inputs 0, (P). */
  private readonly u0: Float64Array;
  private readonly a: Float64Array;
  private readonly b: Float64Array;
  private readonly au0: Float64Array;
  /** E[x], E[x xᵀ], E[u], E[u uᵀ] under q(x_m | z = k), per component: (T, D), (T, D, D), (T, P), (T, P, P). */
  readonly ex: Float64Array;
  readonly exx: Float64Array;
  readonly eu: Float64Array;
  readonly euu: Float64Array;

  constructor(private readonly params: LocalParams) {
    const { T, D, P } = params.spec;
    this.precision = new Float64Array(T * D * D);
    for (let k = 0; k < T; k++) lowerProduct(params.precisionFactor, D, k * D * D, this.precision.subarray(k * D * D, (k + 1) * D * D));
    const rows = referenceRows(familyOf(params.spec.family), params.spec);
    this.inputQuadratic = rows.inputQuadratic;
    this.tightened = rows.tightened === true;
    this.missing = new Int32Array(D);
    this.input = new Int32Array(D);
    this.u0 = new Float64Array(P);
    this.a = new Float64Array(P * P);
    this.b = new Float64Array(P);
    this.au0 = new Float64Array(P);
    this.ex = new Float64Array(T * D);
    this.exx = new Float64Array(T * D * D);
    this.eu = new Float64Array(T * P);
    this.euu = new Float64Array(T * P * P);
  }

  /** Takes the row (x: D values, u: P values); false when none of x is missing. */
  begin(x: ArrayLike<number>, u: ArrayLike<number>): boolean {
    const { D, P } = this.params.spec;
    const inputs = this.params.spec.covariateInputs;
    this.d = 0;
    this.linked = false;
    for (let i = 0; i < D; i++) {
      if (!Number.isNaN(x[i])) continue;
      const j = inputs?.[i] ?? -1;
      this.missing[this.d] = i;
      this.input[this.d++] = j;
      if (j >= 0) this.linked = true;
    }
    if (this.d === 0) return false;
    this.x = x;
    for (let j = 0; j < P; j++) this.u0[j] = Number.isNaN(u[j]) ? 0 : u[j];
    for (let a = 0; a < this.d; a++) if (this.input[a] >= 0) this.u0[this.input[a]] = 0;
    if (this.linked && !this.inputQuadratic)
      throw new InternalError(`a missing regression input reached the local step of the ${this.params.spec.family} family, which cannot integrate it out (the row should have been skipped)`);
    return true;
  }

  /**
   * Component k's term of ln ρ for the current row (module comment): the covariates' with x_m
   * integrated out, plus the response family's when a missing covariate is a regression input
   * (then the caller adds no response term of its own). Fills component k's moments, and what a
   * family whose quadratic is a bound tightened at q(x_m) keeps for its weights (memo[k]).
   */
  term(k: number, y: number, memo: Float64Array): number {
    const { D } = this.params.spec;
    const { d, missing, x } = this;
    const V = this.precision.subarray(k * D * D, (k + 1) * D * D);
    const m = this.params.mean.subarray(k * D, (k + 1) * D);
    const isMissing = (i: number) => Number.isNaN(x[i]);
    // δ = x − m on the observed coordinates, 0 on the missing ones.
    const delta = new Float64Array(D);
    for (let i = 0; i < D; i++) delta[i] = isMissing(i) ? 0 : x[i] - m[i];
    const q = new Float64Array(d * d);
    const h = new Float64Array(d);
    let constant = this.params.covariateConst[k] - 0.5 * quadraticForm(V, D, delta);
    for (let a = 0; a < d; a++) {
      const i = missing[a];
      let s = 0;
      for (let b = 0; b < d; b++) {
        q[a * d + b] = V[i * D + missing[b]];
        s += V[i * D + missing[b]] * m[missing[b]];
      }
      let vo = 0;
      for (let o = 0; o < D; o++) vo += V[i * D + o] * delta[o];
      h[a] = s - vo;
      constant += vo * m[i] - 0.5 * s * m[i];
    }
    if (!this.linked) return this.solve(k, q, h, constant);
    if (!this.tightened) return this.solve(k, ...this.withResponse(k, y, q, h, constant, memo));
    // A bound tightened at q(x_m | k): from q given the covariates alone, alternate the bound's
    // parameter (optimal for q) and q (optimal for it), each step raising the row's bound, until
    // the bound settles.
    this.solve(k, q, h, constant);
    let term = -Infinity;
    for (let it = 0; it < MAX_TIGHTENING; it++) {
      const previous = term;
      term = this.solve(k, ...this.withResponse(k, y, q, h, constant, memo));
      if (Math.abs(term - previous) <= TIGHTENED * Math.max(1, Math.abs(term))) break;
    }
    return term;
  }

  /** The covariate quadratic (q, h, constant) plus the response's in the missing inputs, as new arrays. */
  private withResponse(k: number, y: number, q0: Float64Array, h0: Float64Array, constant: number, memo: Float64Array): [Float64Array, Float64Array, number] {
    const { P } = this.params.spec;
    const { d, input, u0, a: A, b, au0 } = this;
    const q = q0.slice();
    const h = h0.slice();
    const moments = { eu: this.eu.subarray(k * P, (k + 1) * P), euu: this.euu.subarray(k * P * P, (k + 1) * P * P) };
    const c = this.inputQuadratic!(this.params, k, y, A, b, moments, memo);
    let bu = 0;
    let uau = 0;
    for (let i = 0; i < P; i++) {
      let s = 0;
      for (let j = 0; j < P; j++) s += A[i * P + j] * u0[j];
      au0[i] = s;
      bu += b[i] * u0[i];
      uau += u0[i] * s;
    }
    for (let a = 0; a < d; a++) {
      const i = input[a];
      if (i < 0) continue;
      h[a] += b[i] - au0[i];
      for (let bb = 0; bb < d; bb++) if (input[bb] >= 0) q[a * d + bb] += A[i * P + input[bb]];
    }
    return [q, h, constant + c + bu - 0.5 * uau];
  }

  /** q(x_m | k) = N(Q⁻¹h, Q⁻¹) into component k's moments; its log-normalizer is the term. */
  private solve(k: number, q: Float64Array, h: Float64Array, constant: number): number {
    const { d } = this;
    const l = cholesky(q, d, `the precision of the missing covariates under component ${k + 1}`);
    const mean = backSubstitute(l, d, forwardSubstitute(l, d, h.slice()));
    let hz = 0;
    for (let a = 0; a < d; a++) hz += h[a] * mean[a];
    this.fillMoments(k, mean, inverseFromCholesky(l, d));
    return constant + 0.5 * hz + 0.5 * d * LN_2PI - 0.5 * logDetFromCholesky(l, d);
  }

  /** E[x], E[x xᵀ] = E[x]E[x]ᵀ + Cov and the same for u, of component k. */
  private fillMoments(k: number, mean: Float64Array, cov: Float64Array): void {
    const { D, P } = this.params.spec;
    const { d, missing, input, x } = this;
    const ex = this.ex.subarray(k * D, (k + 1) * D);
    const exx = this.exx.subarray(k * D * D, (k + 1) * D * D);
    const eu = this.eu.subarray(k * P, (k + 1) * P);
    const euu = this.euu.subarray(k * P * P, (k + 1) * P * P);
    for (let i = 0; i < D; i++) ex[i] = x[i];
    eu.set(this.u0);
    for (let a = 0; a < d; a++) {
      ex[missing[a]] = mean[a];
      if (input[a] >= 0) eu[input[a]] = mean[a];
    }
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) exx[i * D + j] = ex[i] * ex[j];
    for (let i = 0; i < P; i++) for (let j = 0; j < P; j++) euu[i * P + j] = eu[i] * eu[j];
    for (let a = 0; a < d; a++)
      for (let b = 0; b < d; b++) {
        exx[missing[a] * D + missing[b]] += cov[a * d + b];
        if (input[a] >= 0 && input[b] >= 0) euu[input[a] * P + input[b]] += cov[a * d + b];
      }
  }
}
