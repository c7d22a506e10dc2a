/**
 * Shared coefficients (config sharedCoefficients, docs/model.md §15): the slopes β of the columns
 * at positions A = spec.shared of u are one vector common to every component, and each component
 * keeps its own coefficients b_k at the other positions B (the intercept among them), so
 * θ_k = [β; b_k] (placed back at A and B). Prior: β ~ N(0, Λ0_AA⁻¹) once, b_k ~ N(0, Λ0_BB⁻¹)
 * per component (gaussian: scaled by τ_k, families/gaussian.ts).
 *
 * Nothing upstream of the global step changes: with u holding the shared columns, a component's
 * statistics Σ w_uu u uᵀ, Σ w_u u (and its own block) are exactly those of its untied regression,
 * so λ = λ0 + S keeps the layout of spec.ts, workers, kernels and the wire format are the same, and
 * λ stays linear in S (SVI's convex steps, moves' sums of statistics). Only derive() differs: it
 * forms the tied posterior from λ and writes, per component, the mean and covariance of θ_k
 * (Derived.coef, Derived.coefCovariance) that the local step, predict and the summaries read, so
 * none of them needs to know about β.
 *
 * Shapes: P regression inputs, S = |A| shared, Q = |B| = P − S own; matrices row-major.
 */
import { cholesky, inverseFromCholesky, logDetFromCholesky, quadraticForm, symmetrize, traceOfProduct } from '../../math/linalg.js';
import { ownPositions, priorCoordinates, type Layout, type ModelSpec } from '../spec.js';

/** q(β) and what derive() needs besides the per-component coefficient quantities. */
export interface SharedPosterior {
  /** Positions in u of β (A) and of each component's own coefficients (B, the intercept last). */
  index: readonly number[];
  own: readonly number[];
  /** E[β], (S). */
  mean: Float64Array;
  /** Cov[β], (S, S). */
  covariance: Float64Array;
  /** KL(q ‖ p) of the whole response factor: β, every b_k (and the family's own factors, e.g. τ_k). */
  kl: number;
}

/** What derive() takes from the shared-coefficient step (the fields of Derived it fills). */
export interface SharedDerived {
  /** E[θ_k] with β at A, (T, P). */
  coef: Float64Array;
  /** The matrix whose quadratic form uᵀ(·)u is the local step's spread, (T, P, P); see the family. */
  coefCovariance: Float64Array;
  /** −ln|coefCovariance_k|, (T). */
  lnDetCoefPrecision: Float64Array;
  /** The family's Derived.response, (T, derivedWidth). */
  response: Float64Array;
  shared: SharedPosterior;
}

/** The rows `rows` and columns `cols` of the n × n matrix m, (|rows|, |cols|). */
export function submatrix(m: ArrayLike<number>, n: number, rows: readonly number[], cols: readonly number[]): Float64Array {
  const out = new Float64Array(rows.length * cols.length);
  rows.forEach((i, a) => cols.forEach((j, b) => (out[a * cols.length + b] = m[i * n + j])));
  return out;
}

/** a (n × m) times b (m × p). */
export function matMul(a: Float64Array, b: Float64Array, n: number, m: number, p: number): Float64Array {
  const out = new Float64Array(n * p);
  for (let i = 0; i < n; i++)
    for (let l = 0; l < m; l++) {
      const v = a[i * m + l];
      if (v !== 0) for (let j = 0; j < p; j++) out[i * p + j] += v * b[l * p + j];
    }
  return out;
}

/** a (n × m) times bᵀ, b (p × m). */
export function matMulT(a: Float64Array, b: Float64Array, n: number, m: number, p: number): Float64Array {
  const out = new Float64Array(n * p);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let l = 0; l < m; l++) s += a[i * m + l] * b[j * m + l];
      out[i * p + j] = s;
    }
  return out;
}

/** a (n × m) times x (m). */
export function mulVec(a: Float64Array, x: ArrayLike<number>, n: number, m: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[i] += a[i * m + j] * x[j];
  return out;
}

/** aᵀ x for a (n × m), x (n). */
export function mulTVec(a: Float64Array, x: ArrayLike<number>, n: number, m: number): Float64Array {
  const out = new Float64Array(m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[j] += a[i * m + j] * x[i];
  return out;
}

/** A⁻¹ and ln|A| of an SPD matrix. */
export function inverseAndLogDet(a: Float64Array, n: number, what: string): { inverse: Float64Array; lnDet: number } {
  const chol = cholesky(symmetrize(a, n), n, what);
  return { inverse: inverseFromCholesky(chol, n), lnDet: logDetFromCholesky(chol, n) };
}

/**
 * Component k's blocks from λ, split by A and B. With λ_k = λ0 + S_k:
 * U_AA, U_AB (S, S), (S, Q): the data part Σ w_uu u uᵀ (λ minus the prior); J_bb = Λ0_BB + U_BB,
 * (Q, Q), b_k's precision given β, with its inverse and ln|J_bb|; h_A, h_B: Σ w_u u split.
 * X = U_AB J_bb⁻¹ (S, Q): how b_k's mean moves with β (E[b_k | β] = J_bb⁻¹ (h_B − U_BA β)).
 */
export interface TiedBlocks {
  uAA: Float64Array;
  uAB: Float64Array;
  jbbInverse: Float64Array;
  lnDetJbb: number;
  hA: Float64Array;
  hB: Float64Array;
  x: Float64Array;
}

export function tiedBlocks(spec: ModelSpec, lambda: Float64Array, lambda0: Float64Array, layout: Layout, k: number, A: readonly number[], B: readonly number[]): TiedBlocks {
  const { P } = spec;
  const at = layout.suu + k * P * P;
  const suu = symmetrize(lambda.slice(at, at + P * P), P);
  const data = suu.map((v, i) => v - lambda0[at + i]);
  const h = lambda.subarray(layout.syu + k * P, layout.syu + (k + 1) * P); // h0 = 0
  const { inverse: jbbInverse, lnDet: lnDetJbb } = inverseAndLogDet(submatrix(suu, P, B, B), B.length, `the own-coefficient precision of component ${k + 1}`);
  const uAB = submatrix(data, P, A, B);
  return {
    uAA: submatrix(data, P, A, A),
    uAB,
    jbbInverse,
    lnDetJbb,
    hA: Float64Array.from(A, (i) => h[i]),
    hB: Float64Array.from(B, (i) => h[i]),
    x: matMul(uAB, jbbInverse, A.length, B.length, B.length),
  };
}

/** Writes θ_k = [β; b_k] and a P × P matrix [[cAA, cAB], [cABᵀ, cBB]] at A and B, component k. */
export function embed(
  P: number, A: readonly number[], B: readonly number[], k: number,
  beta: ArrayLike<number>, b: ArrayLike<number>, cAA: ArrayLike<number>, cAB: ArrayLike<number> | null, cBB: ArrayLike<number>,
  coef: Float64Array, cov: Float64Array,
): void {
  const S = A.length;
  const Q = B.length;
  A.forEach((i, a) => (coef[k * P + i] = beta[a]));
  B.forEach((i, a) => (coef[k * P + i] = b[a]));
  const at = k * P * P;
  A.forEach((i, a) => A.forEach((j, c) => (cov[at + i * P + j] = cAA[a * S + c])));
  B.forEach((i, a) => B.forEach((j, c) => (cov[at + i * P + j] = cBB[a * Q + c])));
  A.forEach((i, a) =>
    B.forEach((j, c) => {
      const v = cAB ? cAB[a * Q + c] : 0;
      cov[at + i * P + j] = v;
      cov[at + j * P + i] = v;
    }),
  );
}

/** −ln|C| of the P × P matrix of component k in `cov`. */
export function negLogDet(cov: Float64Array, P: number, k: number): number {
  return -logDetFromCholesky(cholesky(cov.subarray(k * P * P, (k + 1) * P * P), P, `the coefficient covariance of component ${k + 1}`), P);
}

/**
 * The exact posterior of (β, b_1 … b_T) for a family whose only global factor is q(θ) and whose
 * update is λ = λ0 + S in θ's Gaussian natural coordinates (bernoulli's Jaakkola–Jordan bound,
 * poisson's natural-gradient step). Summed over components, the per-component quadratic terms give
 * one Gaussian over the stacked vector whose precision is block-arrowhead:
 *
 *   J_ββ = Λ0_AA + Σ_k U_k,AA,   J_β b_k = U_k,AB,   J_b_k b_k = J_bb,k,   linear terms Σ_k h_k,A and h_k,B
 *
 * and is solved by the Schur complement of the b_k blocks (each J_bb,k inverted once):
 *
 *   M = J_ββ − Σ_k X_k U_k,BA         (Cov[β] = M⁻¹),   E[β] = M⁻¹ Σ_k (h_k,A − X_k h_k,B)
 *   E[b_k] = J_bb,k⁻¹ (h_k,B − U_k,BA E[β]),   Cov[β, b_k] = −M⁻¹ X_k,   Cov[b_k] = J_bb,k⁻¹ + X_kᵀ M⁻¹ X_k
 *   ln|J| = ln|M| + Σ_k ln|J_bb,k|
 *
 * The component's θ_k = [β; b_k] then has the marginal N(E[θ_k], Cov[θ_k]) written to coef and
 * coefCovariance; the local step's η and spread need no more (the bound is a function of θ_k).
 * λ is linear in the joint's natural parameters, so SVI's step on λ is the natural-gradient step
 * on the joint. KL(q ‖ p) = ½ (tr(J0 J⁻¹) − dim + E[·]ᵀ J0 E[·] + ln|J| − ln|J0|), J0 the prior's
 * block diagonal, from the marginal blocks.
 */
export function deriveJointShared(spec: ModelSpec, lambda: Float64Array, layout: Layout): SharedDerived {
  const { T, P } = spec;
  const A = spec.shared ?? [];
  const B = ownPositions(spec);
  const S = A.length;
  const Q = B.length;
  const lambda0 = priorCoordinates(spec);
  const prior = lambda0.subarray(layout.suu, layout.suu + P * P); // Λ0, the same for every component
  const priorAA = submatrix(prior, P, A, A);
  const priorBB = submatrix(prior, P, B, B);
  const lnDetPriorAA = inverseAndLogDet(priorAA.slice(), S, 'Λ0').lnDet;
  const lnDetPriorBB = inverseAndLogDet(priorBB.slice(), Q, 'Λ0').lnDet;

  const blocks: TiedBlocks[] = [];
  const m = priorAA.slice();
  const g = new Float64Array(S);
  for (let k = 0; k < T; k++) {
    const t = tiedBlocks(spec, lambda, lambda0, layout, k, A, B);
    blocks.push(t);
    const xu = matMulT(t.x, t.uAB, S, Q, S); // X_k U_k,BA
    const xh = mulVec(t.x, t.hB, S, Q);
    for (let i = 0; i < S * S; i++) m[i] += t.uAA[i] - xu[i];
    for (let i = 0; i < S; i++) g[i] += t.hA[i] - xh[i];
  }
  const { inverse: covBeta, lnDet: lnDetM } = inverseAndLogDet(m, S, 'the shared coefficients\' precision');
  const beta = mulVec(covBeta, g, S, S);

  const coef = new Float64Array(T * P);
  const coefCovariance = new Float64Array(T * P * P);
  const lnDetCoefPrecision = new Float64Array(T);
  // KL: ½ (tr(J0 Σ) − dim + mᵀ J0 m + ln|J| − ln|J0|), summed block by block.
  let kl = traceOfProduct(priorAA, covBeta, S) - S + quadraticForm(priorAA, S, beta) + lnDetM - lnDetPriorAA;
  for (let k = 0; k < T; k++) {
    const t = blocks[k];
    const hb = t.hB.slice();
    const ub = mulTVec(t.uAB, beta, S, Q); // U_k,BA E[β]
    for (let i = 0; i < Q; i++) hb[i] -= ub[i];
    const b = mulVec(t.jbbInverse, hb, Q, Q);
    const mx = matMul(covBeta, t.x, S, S, Q); // M⁻¹ X_k
    const cAB = mx.map((v) => -v);
    const cBB = t.jbbInverse.slice();
    for (let i = 0; i < Q; i++)
      for (let j = 0; j < Q; j++) {
        let s = 0;
        for (let a = 0; a < S; a++) s += t.x[a * Q + i] * mx[a * Q + j]; // (X_kᵀ M⁻¹ X_k)_ij
        cBB[i * Q + j] += s;
      }
    symmetrize(cBB, Q);
    embed(P, A, B, k, beta, b, covBeta, cAB, cBB, coef, coefCovariance);
    lnDetCoefPrecision[k] = negLogDet(coefCovariance, P, k);
    kl += traceOfProduct(priorBB, cBB, Q) - Q + quadraticForm(priorBB, Q, b) + t.lnDetJbb - lnDetPriorBB;
  }
  return {
    coef,
    coefCovariance,
    lnDetCoefPrecision,
    response: new Float64Array(0),
    shared: { index: A, own: B, mean: beta, covariance: covBeta, kl: 0.5 * kl },
  };
}
