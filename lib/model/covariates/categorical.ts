/**
 * Categorical clustering covariates: per component k and column j, x_nj ~ Categorical(φ_kj) over
 * the column's L_j levels, φ_kj ~ Dirichlet(α0 1) (α0 = priors.levelConcentration); the discrete
 * analogue of the Normal-Wishart factor (PRML §10.2 with a multinomial in place of the Gaussian).
 *
 * Block `levels`, width W = Σ_j L_j per component, column j's levels at [off_j, off_j + L_j):
 *   statistic  S_kjl = Σ_n r_nk [x_nj = l]
 *   coordinate α_kjl = α0 + S_kjl                        (conjugate: λ = λ0 + S, PRML 10.58)
 * A row's codes are off_j + x_nj, one per column (Batch.categories, (n, J)); a missing value is
 * the code MISSING_CODE (−1), whose column's term is dropped: summing a categorical over its levels
 * gives 1, so the row's likelihood is that of its observed columns (docs/model.md §18).
 *
 *   ln ρ_nk += Σ_j E[ln φ_kj,x_nj],  E[ln φ_kjl] = ψ(α_kjl) − ψ(Σ_l α_kjl)    (PRML 10.66)
 *   KL = Σ_kj KL(Dir(α_kj) ‖ Dir(α0 1))                                       (PRML B.21, 10.70)
 *   p(x_nj = l | k, data) = α_kjl / Σ_l α_kjl                                  (Dirichlet-categorical predictive)
 */
import { digamma, lnGamma } from '../../math/special.js';
import type { Layout, LayoutSpec, ModelSpec } from '../spec.js';
import type { CovariateFactor } from './factor.js';

/** A missing categorical value in Batch.categories: the column drops out of the row's terms. */
export const MISSING_CODE = -1;

/** W = Σ_j L_j, values per component. */
function widthOf(spec: LayoutSpec): number {
  return (spec.levels ?? []).reduce((s, l) => s + l, 0);
}

/** α0, the symmetric Dirichlet prior on each column's level probabilities. */
function priorConcentration(spec: ModelSpec): number {
  return spec.priors.levelConcentration;
}

/** Calls f(start, L) for each column's levels [start, start + L) within a component's block. */
function forColumns(spec: LayoutSpec, f: (start: number, L: number) => void): void {
  let start = 0;
  for (const L of spec.levels ?? []) {
    f(start, L);
    start += L;
  }
}

/** Σ_l α_kjl of one column of one component: its L levels from lambda[at]. */
function levelTotal(lambda: Float64Array, at: number, L: number): number {
  let total = 0;
  for (let l = 0; l < L; l++) total += lambda[at + l];
  return total;
}

/** Σ_jl S_kjl f(α_kjl, Σ_l α_kjl) over component k's levels with a count (f: a log-probability). */
function levelWeightedSum(
  spec: ModelSpec,
  lambda: Float64Array,
  layout: Layout,
  stats: Float64Array,
  k: number,
  f: (alpha: number, total: number) => number,
): number {
  const W = widthOf(spec);
  let s = 0;
  forColumns(spec, (start, L) => {
    const at = layout.levels + k * W + start;
    const total = levelTotal(lambda, at, L);
    for (let l = 0; l < L; l++) if (stats[at + l] !== 0) s += stats[at + l] * f(lambda[at + l], total);
  });
  return s;
}

export const categorical: CovariateFactor = {
  name: 'categorical',

  block: (spec) => (widthOf(spec) > 0 ? { name: 'levels', width: widthOf(spec) } : null),

  prior(spec, lambda0, layout) {
    lambda0.fill(priorConcentration(spec), layout.levels, layout.levels + spec.T * widthOf(spec));
  },

  local(spec, lambda, layout) {
    // E[ln φ_kjl], shape (T, W)
    const W = widthOf(spec);
    const table = new Float64Array(spec.T * W);
    for (let k = 0; k < spec.T; k++)
      forColumns(spec, (start, L) => {
        const at = layout.levels + k * W + start;
        const total = levelTotal(lambda, at, L);
        const psiTotal = digamma(total);
        for (let l = 0; l < L; l++) table[k * W + start + l] = digamma(lambda[at + l]) - psiTotal;
      });
    return table;
  },

  logLik(spec, table, k, codes, at) {
    const J = spec.levels!.length;
    const base = k * widthOf(spec);
    let s = 0;
    for (let j = 0; j < J; j++) if (codes[at + j] !== MISSING_CODE) s += table[base + codes[at + j]];
    return s;
  },

  accumulate(spec, codes, at, r, stats, blockAt) {
    const J = spec.levels!.length;
    for (let j = 0; j < J; j++) if (codes[at + j] !== MISSING_CODE) stats[blockAt + codes[at + j]] += r;
  },

  kl(spec, lambda, layout) {
    const W = widthOf(spec);
    const alpha0 = priorConcentration(spec);
    const lnGammaAlpha0 = lnGamma(alpha0);
    let kl = 0;
    for (let k = 0; k < spec.T; k++)
      forColumns(spec, (start, L) => {
        const at = layout.levels + k * W + start;
        const total = levelTotal(lambda, at, L);
        const psiTotal = digamma(total);
        // KL(Dir(α) ‖ Dir(α0 1)) = ln Γ(Σα) − ln Γ(L α0) + Σ_l [ln Γ(α0) − ln Γ(α_l) + (α_l − α0)(ψ(α_l) − ψ(Σα))]
        kl += lnGamma(total) - lnGamma(L * alpha0);
        for (let l = 0; l < L; l++) {
          const a = lambda[at + l];
          kl += lnGammaAlpha0 - lnGamma(a) + (a - alpha0) * (digamma(a) - psiTotal);
        }
      });
    return kl;
  },

  expectedLogLik(spec, lambda, layout, stats, k) {
    // Σ_n r_nk Σ_j E[ln φ_kj,x_nj] = Σ_jl S_kjl E[ln φ_kjl]
    return levelWeightedSum(spec, lambda, layout, stats, k, (alpha, total) => digamma(alpha) - digamma(total));
  },

  logPredictive(spec, lambda, layout, k, codes, at) {
    const W = widthOf(spec);
    let s = 0;
    let j = 0;
    forColumns(spec, (start, L) => {
      const base = layout.levels + k * W + start;
      const code = codes[at + j++];
      if (code === MISSING_CODE) return;
      const total = levelTotal(lambda, base, L);
      s += Math.log(lambda[layout.levels + k * W + code] / total);
    });
    return s;
  },

  plugIn: {
    logLik(spec, lambda, layout, stats, k) {
      // Σ_jl S_kjl ln φ̂_kjl, φ̂_kjl = α_kjl / Σ_l α_kjl
      return levelWeightedSum(spec, lambda, layout, stats, k, (alpha, total) => Math.log(alpha / total));
    },
    /** Σ_j (L_j − 1): each column's level probabilities sum to 1. */
    parameters: (spec) => widthOf(spec) - (spec.levels?.length ?? 0),
  },

  summary(spec, lambda, layout, k, names) {
    // E[φ_kjl] = α_kjl / Σ_l α_kjl by column and level name
    const W = widthOf(spec);
    const out: Record<string, Record<string, number>> = {};
    let j = 0;
    forColumns(spec, (start, L) => {
      const at = layout.levels + k * W + start;
      const total = levelTotal(lambda, at, L);
      const { column, levels } = names[j++];
      out[column] = Object.fromEntries(levels.map((level, l) => [level, lambda[at + l] / total]));
    });
    return out;
  },
};
