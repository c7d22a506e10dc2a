/**
 * Multinomial response (multinomial logit, softmax; docs/model.md §17): y ∈ {0, …, C − 1}, the
 * index of its label among the target's sorted labels (the planner's sample, like a categorical
 * column's levels; lib/data/dataset.ts settleLevels). Class 0, the first sorted label, is the
 * reference (treatment coding): its linear predictor is 0 and every other class j = 1 … M,
 * M = C − 1, has its own coefficients θ_kj (P) per component,
 *
 *   P(y = j | u, k) = e^{η_j} / (1 + Σ_l e^{η_l}),   η_j = θ_kjᵀu,   θ_kj ~ N(0, Λ0⁻¹), Λ0 = diag(c) (spec.ts coefficientPriorPrecision).
 *
 * Not conjugate. Böhning's bound (Böhning 1992; Khan et al. 2010; Murphy, MLAPP §21.8.2) bounds
 * the log-sum-exp lse(η) = ln(1 + Σ_j e^{η_j}) by a quadratic of fixed curvature
 * A = ½ (I_M − 11ᵀ/C) around any ψ (M):
 *
 *   lse(η) ≤ lse(ψ) + (η − ψ)ᵀ g(ψ) + ½ (η − ψ)ᵀ A (η − ψ),   g = softmax(ψ) over the M classes,
 *
 * so ln p(y | η) ≥ yᵀη − ½ ηᵀAη + b_ψᵀη − c_ψ with y the one-hot (M; zero for the reference) and
 * b_ψ = A ψ − g(ψ). In expectation over a Gaussian q(Θ_k) the bound is tightest at ψ = E[η], where
 * it equals
 *
 *   E ln p(y | u, k) ≥ yᵀm − lse(m) − ½ tr(A Cov[η]),   m = E[η] = Θ_k u.
 *
 * It is quadratic in Θ_k, so q(Θ_k) is one joint Gaussian over the M·P coefficients and λ0 + S is
 * its exact maximizer given the local step (`exactUpdate`): the precision and the natural mean are
 *
 *   Λ_k = I_M ⊗ Λ0 + A ⊗ U_k,   U_k = Σ_n r_nk u uᵀ          (the generic block suu: λ = Λ0 + U_k)
 *   h_k = Σ_n r_nk (y_n + b_n) ⊗ u,   b_n = A m_n − g(m_n)   (this family's block syy, M·P, class-major)
 *
 * and the generic block syu stays 0. A's eigenvectors are 1/√M (eigenvalue 1/(2C)) and the M − 1
 * directions orthogonal to 1 (eigenvalue ½), so with the projections P₁ = 11ᵀ/M, P⊥ = I − P₁
 *
 *   Λ_k⁻¹ = P⊥ ⊗ S_a + P₁ ⊗ S_b,   S_a = (Λ0 + ½ U_k)⁻¹,   S_b = (Λ0 + U_k/(2C))⁻¹     (P × P each)
 *   ln|Λ_k| = (M − 1) ln|Λ0 + ½ U_k| + ln|Λ0 + U_k/(2C)|,
 *   θ_kj = S_a (h_j − h̄) + S_b h̄,   h̄ = (1/M) Σ_j h_j,
 *   Cov[η] = P⊥ s_a + P₁ s_b,  s = uᵀ S u,   tr(A Cov[η]) = ½ (M − 1) s_a + s_b / (2C).
 *
 * Everything is P × P work. Derived.coef and coefCovariance (the generic one-predictor quantities)
 * are 0 and (Λ0 + U_k)⁻¹ here and mean nothing; the family's q(Θ) is in Derived.response. y is not
 * standardized. No fused TensorFlow.js path: the tfjs kernel runs this on the reference path.
 */
import { ClusterwiseError } from '../../errors.js';
import { cholesky, lowerProduct } from '../../math/linalg.js';
import type { Derived } from '../posterior.js';
import { coefficientPriorPrecision } from '../spec.js';
import type { FamilyDims, ReferenceRows, ResponseFamily } from './family.js';
import { inverseAndLogDet } from './shared.js';

/** C, the classes of the target (ModelSpec.classes), checked. */
function classesOf(dims: FamilyDims): number {
  const C = dims.classes;
  if (C === undefined || !(C >= 2)) throw new Error(`multinomial: the model needs the target's classes (ModelSpec.classes = ${C})`);
  return C;
}

/**
 * Offsets within component k's Derived.response: Θ (M, P), S_a (P, P), S_b (P, P), then ln|Λ0 + ½U|
 * and ln|Λ0 + U/(2C)|. LocalParams.response: Θ, then the lower Cholesky factors of S_a and S_b.
 */
function offsets(dims: FamilyDims) {
  const { P } = dims;
  const M = classesOf(dims) - 1;
  return { M, P, C: M + 1, a: M * P, b: M * P + P * P, lnDet: M * P + 2 * P * P };
}

/** lse(m) = ln(1 + Σ_j e^{m_j}) over the M non-reference predictors (the reference's is 0), stable. */
function logSumExp(m: Float64Array, M: number): number {
  let max = 0;
  for (let j = 0; j < M; j++) if (m[j] > max) max = m[j];
  let s = Math.exp(-max);
  for (let j = 0; j < M; j++) s += Math.exp(m[j] - max);
  return max + Math.log(s);
}

/** ‖uᵀ L‖² = uᵀ S u for S = L Lᵀ, L lower triangular (P, P) at l[at …]. */
function spreadOf(u: ArrayLike<number>, l: Float64Array, at: number, P: number): number {
  let s = 0;
  for (let j = 0; j < P; j++) {
    let z = 0;
    for (let i = j; i < P; i++) z += u[i] * l[at + i * P + j];
    s += z * z;
  }
  return s;
}

/** m = Θ u (M) from a table whose component k's Θ (M, P) starts at `at`; 0 when `table` is null. */
function predictors(table: Float64Array | null, at: number, u: ArrayLike<number>, M: number, P: number, m: Float64Array): void {
  for (let j = 0; j < M; j++) {
    let s = 0;
    if (table) for (let i = 0; i < P; i++) s += table[at + j * P + i] * u[i];
    m[j] = s;
  }
}

/** The reference path's row terms for a model of these dims (m: the row's predictors, reused row to row). */
function rowsFor(dims: FamilyDims): ReferenceRows {
  const { M, P, C } = offsets(dims);
  const width = multinomial.localWidth(dims);
  const m = new Float64Array(M);
  return {
    ownPredictors: true,
    logLik(local, k, _eta, _spread, y, _offset, _memo, u) {
      const at = k * width;
      predictors(local, at, u, M, P, m);
      const sa = spreadOf(u, local, at + M * P, P);
      const sb = spreadOf(u, local, at + M * P + P * P, P);
      // yᵀm − lse(m) − ½ tr(A Cov[η])
      return (y > 0 ? m[y - 1] : 0) - logSumExp(m, M) - 0.5 * (0.5 * (M - 1) * sa + sb / (2 * C));
    },
    weights(_local, _k, r, _eta, _y, _offset, _memo, out) {
      out[0] = r; // into U_k = Σ r u uᵀ; A multiplies it in derive
      out[1] = 0;
    },
    // With a missing input (docs/model.md §18), the bound at any ψ in expectation over q(Θ_k), as a
    // quadratic in u: (y + b_ψ)ᵀΘu − ½ uᵀ(ΘᵀAΘ + ½(M − 1) S_a + S_b/(2C))u − c_ψ, b_ψ = Aψ − g(ψ),
    // c_ψ = lse(ψ) − g(ψ)ᵀψ + ½ ψᵀAψ (it equals yᵀψ − lse(ψ) − ½ tr(A Cov[η]) at ψ = Θu); tightest
    // at ψ = E[η] = Θ E[u]. ΘᵀAΘ = ½ (ΘᵀΘ − (Θᵀ1)(Θᵀ1)ᵀ/C).
    tightened: true,
    inputQuadratic(params, k, y, a, b, { eu }) {
      const at = k * width;
      const local = params.response;
      predictors(local, at, eu, M, P, m); // ψ
      const lse = logSumExp(m, M);
      let sum = 0;
      for (let j = 0; j < M; j++) sum += m[j];
      let constant = -lse;
      b.fill(0);
      const column = new Float64Array(P); // Θᵀ1
      for (let j = 0; j < M; j++) {
        const g = Math.exp(m[j] - lse);
        const aPsi = 0.5 * (m[j] - sum / C); // (Aψ)_j
        constant += g * m[j] - 0.5 * m[j] * aPsi;
        const w = (y === j + 1 ? 1 : 0) + aPsi - g;
        for (let i = 0; i < P; i++) {
          b[i] += w * local[at + j * P + i];
          column[i] += local[at + j * P + i];
        }
      }
      const sa = lowerProduct(local, P, at + M * P); // S_a from its Cholesky factor
      const sb = lowerProduct(local, P, at + M * P + P * P);
      for (let i = 0; i < P; i++)
        for (let l = 0; l <= i; l++) {
          let tt = 0;
          for (let j = 0; j < M; j++) tt += local[at + j * P + i] * local[at + j * P + l];
          a[i * P + l] = a[l * P + i] = 0.5 * (tt - (column[i] * column[l]) / C) + 0.5 * (M - 1) * sa[i * P + l] + sb[i * P + l] / (2 * C);
        }
      return constant;
    },
    // h_k += r (y + A m − g(m)) ⊗ u, the bound's linear term at ψ = m (a row with a missing input: u = E[u], ψ = Θ E[u]).
    extra(r, y, stats, at, u, local, k) {
      predictors(local, k * width, u, M, P, m);
      const lse = logSumExp(m, M);
      let sum = 0;
      for (let j = 0; j < M; j++) sum += m[j];
      for (let j = 0; j < M; j++) {
        const g = Math.exp(m[j] - lse);
        const coefficient = r * ((y === j + 1 ? 1 : 0) + 0.5 * (m[j] - sum / C) - g); // (A m)_j = ½ (m_j − Σ m / C)
        for (let i = 0; i < P; i++) stats[at + j * P + i] += coefficient * u[i];
      }
    },
  };
}

export const multinomial: ResponseFamily = {
  name: 'multinomial',
  description: 'multinomial logit of a class label (3 or more classes; the first sorted label is the reference)',
  target: { kind: 'category', standardized: false },
  acceptsOffset: false,
  exactUpdate: true,
  link: 'logit',
  coefficientUnit: 'log-odds vs the reference class',
  predicted: 'most probable class',
  extraWidth: (dims) => (classesOf(dims) - 1) * dims.P,
  derivedWidth: (dims) => (classesOf(dims) - 1) * dims.P + 2 * dims.P * dims.P + 2,
  localWidth: (dims) => (classesOf(dims) - 1) * dims.P + 2 * dims.P * dims.P,

  priorExtra(_priors, dims) {
    return new Array<number>((classesOf(dims) - 1) * dims.P).fill(0);
  },

  derive(spec, lambda, layout, k, _count, _theta, out) {
    const { M, P, C, a, b, lnDet } = offsets(spec);
    const c = coefficientPriorPrecision(spec); // Λ0 = diag(c) (spec.ts priorCoordinates)
    const suu = lambda.subarray(layout.suu + k * P * P, layout.suu + (k + 1) * P * P); // Λ0 + U_k
    // Λ0 + d U_k = (1 − d) Λ0 + d (Λ0 + U_k) for the two eigenvalues d = ½, 1/(2C) of A.
    const precisionAt = (d: number) => {
      const m = new Float64Array(P * P);
      for (let i = 0; i < P * P; i++) m[i] = d * suu[i];
      for (let i = 0; i < P; i++) m[i * P + i] += (1 - d) * c[i];
      return m;
    };
    const sa = inverseAndLogDet(precisionAt(0.5), P, `the coefficient precision Λ0 + U/2 of component ${k + 1}`);
    const sb = inverseAndLogDet(precisionAt(1 / (2 * C)), P, `the coefficient precision Λ0 + U/(2C) of component ${k + 1}`);
    out.set(sa.inverse, a);
    out.set(sb.inverse, b);
    out[lnDet] = sa.lnDet;
    out[lnDet + 1] = sb.lnDet;
    // θ_j = S_a (h_j − h̄) + S_b h̄.
    const h = lambda.subarray(layout.syy + k * M * P, layout.syy + (k + 1) * M * P);
    const mean = new Float64Array(P);
    for (let j = 0; j < M; j++) for (let i = 0; i < P; i++) mean[i] += h[j * P + i] / M;
    for (let j = 0; j < M; j++)
      for (let i = 0; i < P; i++) {
        let s = 0;
        for (let l = 0; l < P; l++) s += sa.inverse[i * P + l] * (h[j * P + l] - mean[l]) + sb.inverse[i * P + l] * mean[l];
        out[j * P + i] = s;
      }
  },

  noSharedCoefficients: 'its coefficients are per class as well as per cluster',
  // The config schema refuses shared coefficients (noSharedCoefficients); a spec made without it still cannot tie them.
  deriveShared() {
    throw new ClusterwiseError(`sharedCoefficients: not available for the multinomial family (${multinomial.noSharedCoefficients}); drop --shared-coefficients`);
  },

  local(d, k, out) {
    const { M, P, a, b } = offsets(d.spec);
    const w = multinomial.derivedWidth(d.spec);
    const own = d.response.subarray(k * w, (k + 1) * w);
    out.set(own.subarray(0, M * P), 0);
    out.set(cholesky(own.slice(a, a + P * P), P, `S_a of component ${k + 1}`), M * P);
    out.set(cholesky(own.slice(b, b + P * P), P, `S_b of component ${k + 1}`), M * P + P * P);
  },

  // KL(N(Θ, Λ⁻¹) ‖ N(0, I_M ⊗ Λ0⁻¹)), Λ0 = diag(c), per component:
  // ½ (Σ_i c_i (Σ_j Λ_j⁻¹)_ii − MP + Σ_j Σ_i c_i θ_ji² + ln|Λ| − M Σ_i ln c_i), with
  // Σ_j Λ_j⁻¹ = (M − 1) S_a + S_b. The generic q(θ) of Derived.coef is not this family's.
  kl(d, _lambda0, total) {
    const { M, P, a, b, lnDet } = offsets(d.spec);
    const c = coefficientPriorPrecision(d.spec);
    const lnDetPrior = c.reduce((sum, ci) => sum + Math.log(ci), 0);
    const w = multinomial.derivedWidth(d.spec);
    for (let k = 0; k < d.spec.T; k++) {
      const own = d.response.subarray(k * w, (k + 1) * w);
      let trace = 0;
      for (let i = 0; i < P; i++) trace += c[i] * ((M - 1) * own[a + i * P + i] + own[b + i * P + i]);
      let norm = 0;
      for (let i = 0; i < M * P; i++) norm += c[i % P] * own[i] * own[i];
      const lnDetPrecision = (M - 1) * own[lnDet] + own[lnDet + 1];
      total += 0.5 * (trace - M * P + norm + lnDetPrecision - M * lnDetPrior);
    }
    return total;
  },

  // Before any posterior: the bound at ψ = 0 (Θ = 0), where b = −1/C; the quadratic part is U = Σ u uᵀ
  // (`extra` writes the linear part with local = null).
  hardWeights(_y, _offset, out) {
    out[0] = 1;
    out[1] = 0;
  },

  validExtra: (extra) => extra.every(Number.isFinite),
  heads: classCoefficients,

  rows: rowsFor,

  // p(y = c | u, k) = E_q[softmax(η)]_c, approximated by the probit-style scaling of each predictor,
  // softmax(κ ∘ m) with κ_j = (1 + π Var[η_j] / 8)^(−½) (PRML 4.153–4.154 per class; the reference
  // class's η is 0 exactly), Var[η_j] = (1 − 1/M) s_a + s_b / M (the diagonal of Cov[η] above).
  predictive: {
    columns: ['prediction'],
    classes: true,
    constant: () => 0,
    parameters(d, k) {
      const out = new Float64Array(multinomial.localWidth(d.spec));
      multinomial.local(d, k, out);
      return out;
    },
    add(acc, weight, _eta, _spread, _offset, _constant, u, parameters) {
      const M = acc.length - 1;
      const p = classProbabilities(u, parameters, M);
      for (let c = 0; c <= M; c++) acc[c] += weight * p[c];
    },
    mean(acc) {
      let best = 0;
      for (let c = 1; c < acc.length; c++) if (acc[c] > acc[best]) best = c;
      return best;
    },
    logDensity(y, _eta, _spread, _offset, _constant, u, parameters) {
      const M = (parameters.length - 2 * u.length * u.length) / u.length;
      return Math.log(classProbabilities(u, parameters, M)[y]);
    },
  },
  // One class against the reference alone (the report draws no curves along a column for a class label).
  inverseLink: (eta) => 1 / (1 + Math.exp(-eta)),
  // The share of rows whose most probable class is their own.
  fit(actual, predicted) {
    let s = 0;
    for (let i = 0; i < actual.length; i++) s += actual[i] === predicted[i] ? 1 : 0;
    return ['accuracy', s / Math.max(1, actual.length)];
  },
};

/** The approximate predictive class probabilities (C) of a row u (P) from one component's local parameters (Θ, C_a, C_b). */
function classProbabilities(u: Float64Array, parameters: Float64Array, M: number): Float64Array {
  const P = u.length;
  const m = new Float64Array(M);
  predictors(parameters, 0, u, M, P, m);
  const sa = spreadOf(u, parameters, M * P, P);
  const sb = spreadOf(u, parameters, M * P + P * P, P);
  for (let j = 0; j < M; j++) m[j] /= Math.sqrt(1 + (Math.PI * ((1 - 1 / M) * sa + sb / M)) / 8);
  const lse = logSumExp(m, M);
  const p = new Float64Array(M + 1);
  p[0] = Math.exp(-lse);
  for (let j = 0; j < M; j++) p[j + 1] = Math.exp(m[j] - lse);
  return p;
}

/** Component k's coefficients per non-reference class: θ_kj (P) and Cov[θ_kj] = (1 − 1/M) S_a + S_b / M (P, P). */
function classCoefficients(d: Derived, k: number): { coef: Float64Array; covariance: Float64Array }[] {
  const { M, P, a, b } = offsets(d.spec);
  const w = multinomial.derivedWidth(d.spec);
  const own = d.response.subarray(k * w, (k + 1) * w);
  return Array.from({ length: M }, (_, j) => ({
    coef: own.slice(j * P, (j + 1) * P),
    covariance: Float64Array.from({ length: P * P }, (_, i) => (1 - 1 / M) * own[a + i] + own[b + i] / M),
  }));
}
