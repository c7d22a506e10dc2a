/**
 * The model's dimensions and the layout of its natural ("linear") coordinates.
 *
 * Every global factor is conjugate, so its posterior is prior + sufficient statistics in these
 * coordinates (DESIGN.md §2): λ = λ0 + S. The pipeline only ever moves S, a single Float64Array in
 * this layout, so combining, scaling and serializing statistics is plain vector arithmetic.
 */
import type { Family, ModelConfig, Priors } from '../config.js';

export interface ModelSpec {
  /** Components (truncation level). */
  T: number;
  /** Clustering covariates x. 0 in conditional-only mode. */
  D: number;
  /** Regression inputs u = [r; 1], intercept last. */
  P: number;
  family: Family;
  weights: ModelConfig['weights'];
  covariateModel: boolean;
  priors: Priors;
}

/**
 * Offsets of the blocks of a statistics (or natural-parameter) vector.
 *
 * | block | shape     | statistic S (row sums, weights r_nk)          | coordinate λ        |
 * |-------|-----------|-----------------------------------------------|---------------------|
 * | count | (T)       | N_k = Σ r                                      | N_k                 |
 * | sx    | (T, D)    | Σ r x                                          | β_k m_k             |
 * | sxx   | (T, D, D) | Σ r x xᵀ                                       | W_k⁻¹ + β_k m_k m_kᵀ |
 * | suu   | (T, P, P) | Σ r u uᵀ (bernoulli: Σ 2 r λ(ξ) u uᵀ)          | Λ_k                 |
 * | syu   | (T, P)    | Σ r y u (bernoulli: Σ r (y − ½) u)             | h_k = Λ_k θ_k       |
 * | syy   | (T)       | Σ r y² (bernoulli: unused, 0)                  | c_k = 2 b_k + h_kᵀ θ_k |
 */
export interface Layout {
  count: number;
  sx: number;
  sxx: number;
  suu: number;
  syu: number;
  syy: number;
  length: number;
}

export function layoutOf(spec: Pick<ModelSpec, 'T' | 'D' | 'P'>): Layout {
  const { T, D, P } = spec;
  const count = 0;
  const sx = count + T;
  const sxx = sx + T * D;
  const suu = sxx + T * D * D;
  const syu = suu + T * P * P;
  const syy = syu + T * P;
  return { count, sx, sxx, suu, syu, syy, length: syy + T };
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
 * λ0, the prior in natural coordinates (m0 = 0, θ0 = 0):
 * sxx = W0⁻¹ = ν0 s I, suu = Λ0 = c I, syy = 2 b0 (gaussian).
 */
export function priorCoordinates(spec: ModelSpec): Float64Array {
  const { T, D, P, priors } = spec;
  const layout = layoutOf(spec);
  const lambda0 = new Float64Array(layout.length);
  const wishartInverse = priorDegreesOfFreedom(spec) * priors.clusterVariance;
  for (let k = 0; k < T; k++) {
    for (let i = 0; i < D; i++) lambda0[layout.sxx + k * D * D + i * D + i] = wishartInverse;
    for (let i = 0; i < P; i++) lambda0[layout.suu + k * P * P + i * P + i] = priors.coefficientPrecision;
    if (spec.family === 'gaussian') lambda0[layout.syy + k] = 2 * priors.noiseRate;
  }
  return lambda0;
}

export function specFromConfig(config: ModelConfig, D: number, P: number): ModelSpec {
  return {
    T: config.components,
    D: config.covariateModel ? D : 0,
    P,
    family: config.family,
    weights: config.weights,
    covariateModel: config.covariateModel,
    priors: config.priors,
  };
}

/**
 * Symmetric blocks (sxx: T×D×D, suu: T×P×P) stored as their upper triangles, row by row: what
 * statistics and coordinates take on the wire and in the object store (half the bytes at large D).
 * Every other block is copied as it is. `unpackSymmetric(spec, packSymmetric(spec, v))` equals v
 * for every v whose symmetric blocks are symmetric.
 */
export function packedLength(spec: Pick<ModelSpec, 'T' | 'D' | 'P'>): number {
  const { T, D, P } = spec;
  return layoutOf(spec).length - T * (D * (D - 1) + P * (P - 1)) / 2;
}

function symmetricBlocks(spec: Pick<ModelSpec, 'T' | 'D' | 'P'>): { offset: number; n: number; end: number }[] {
  const layout = layoutOf(spec);
  return [
    { offset: layout.sxx, n: spec.D, end: layout.suu },
    { offset: layout.suu, n: spec.P, end: layout.syu },
  ];
}

export function packSymmetric(spec: Pick<ModelSpec, 'T' | 'D' | 'P'>, full: Float64Array): Float64Array {
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

export function unpackSymmetric(spec: Pick<ModelSpec, 'T' | 'D' | 'P'>, packed: Float64Array): Float64Array {
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
