/** Measures of a fit against a known answer, shared by the simulator, the studies and the tests. */
import { backSubstitute, cholesky, forwardSubstitute, inverseFromCholesky } from '../lib/math/linalg.js';

/** Adjusted Rand index of two labelings (Hubert & Arabie 1985). */
export function adjustedRandIndex(a: number[], b: number[]): number {
  const pairs = (n: number) => (n * (n - 1)) / 2;
  const table = new Map<string, number>();
  const rows = new Map<number, number>();
  const cols = new Map<number, number>();
  a.forEach((x, i) => {
    table.set(`${x},${b[i]}`, (table.get(`${x},${b[i]}`) ?? 0) + 1);
    rows.set(x, (rows.get(x) ?? 0) + 1);
    cols.set(b[i], (cols.get(b[i]) ?? 0) + 1);
  });
  const index = [...table.values()].reduce((s, n) => s + pairs(n), 0);
  const sa = [...rows.values()].reduce((s, n) => s + pairs(n), 0);
  const sb = [...cols.values()].reduce((s, n) => s + pairs(n), 0);
  const expected = (sa * sb) / pairs(a.length);
  return (index - expected) / ((sa + sb) / 2 - expected);
}

/**
 * Least squares of y on the rows of `design` (n × p) with its standard errors,
 * √(s² (XᵀX)⁻¹_jj), s² = RSS / (n − p): the reference a fit's coefficients and intervals are held to.
 */
export function leastSquares(design: readonly (readonly number[])[], y: readonly number[]): { coefficients: Float64Array; standardErrors: number[] } {
  const p = design[0].length;
  const gram = new Float64Array(p * p);
  const moment = new Float64Array(p);
  design.forEach((u, n) =>
    u.forEach((ui, a) => {
      moment[a] += ui * y[n];
      u.forEach((uj, b) => (gram[a * p + b] += ui * uj));
    }),
  );
  const l = cholesky(gram, p, 'the Gram matrix of a least-squares reference');
  const coefficients = backSubstitute(l, p, forwardSubstitute(l, p, moment));
  const rss = design.reduce((sum, u, n) => sum + (y[n] - u.reduce((f, ui, a) => f + ui * coefficients[a], 0)) ** 2, 0);
  const inverse = inverseFromCholesky(l, p);
  return { coefficients, standardErrors: Array.from({ length: p }, (_, a) => Math.sqrt((rss / (design.length - p)) * inverse[a * p + a])) };
}
