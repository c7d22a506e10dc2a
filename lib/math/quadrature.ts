/**
 * Gauss–Hermite quadrature for expectations under a Gaussian: E[f(z)], z ~ N(0, 1), is approximated
 * by Σ_i w_i f(z_i); n nodes integrate polynomials of degree up to 2n − 1 exactly (Abramowitz &
 * Stegun 25.4.46 with the nodes scaled by √2 and the weights by 1/√π, so they sum to 1).
 */

const SQRT3 = Math.sqrt(3);
const SQRT6 = Math.sqrt(6);
const SQRT10 = Math.sqrt(10);

/** Nodes and weights for n = 1 … 5, in closed form (the roots of the probabilists' Hermite polynomial He_n). */
const RULES: readonly { nodes: readonly number[]; weights: readonly number[] }[] = [
  { nodes: [0], weights: [1] },
  { nodes: [-1, 1], weights: [1 / 2, 1 / 2] },
  { nodes: [-SQRT3, 0, SQRT3], weights: [1 / 6, 2 / 3, 1 / 6] },
  {
    nodes: [-Math.sqrt(3 + SQRT6), -Math.sqrt(3 - SQRT6), Math.sqrt(3 - SQRT6), Math.sqrt(3 + SQRT6)],
    weights: [(3 - SQRT6) / 12, (3 + SQRT6) / 12, (3 + SQRT6) / 12, (3 - SQRT6) / 12],
  },
  {
    nodes: [-Math.sqrt(5 + SQRT10), -Math.sqrt(5 - SQRT10), 0, Math.sqrt(5 - SQRT10), Math.sqrt(5 + SQRT10)],
    weights: [(7 - 2 * SQRT10) / 60, (7 + 2 * SQRT10) / 60, 8 / 15, (7 + 2 * SQRT10) / 60, (7 - 2 * SQRT10) / 60],
  },
];

/** The n-node rule for z ~ N(0, 1), 1 ≤ n ≤ 5. */
export function gaussHermite(n: number): { nodes: readonly number[]; weights: readonly number[] } {
  const rule = RULES[n - 1];
  if (!rule) throw new RangeError(`gaussHermite: ${n} nodes; 1 to ${RULES.length} are tabulated`);
  return rule;
}

/**
 * The product rule for E[f(z)], z ~ N(0, I_d): the d-fold product of the n-node rule, with
 * n = min(5, ⌊maxNodes^(1/d)⌋) so that it has at most `maxNodes` nodes (d = 1, 2, 3: 5 per axis;
 * 4: 3; 5, 6: 2; more: the mean alone). For E[f(μ + L z)], map each node z to μ + L z with L L^T
 * the covariance. Nodes (N, d) row-major; weights (N) sum to 1.
 */
export function productRule(d: number, maxNodes = 125): { n: number; nodes: Float64Array; weights: Float64Array } {
  // The small epsilon keeps ⌊125^(1/3)⌋ at 5 despite rounding.
  const n = Math.max(1, Math.min(RULES.length, Math.floor(maxNodes ** (1 / d) + 1e-9)));
  const rule = RULES[n - 1];
  const count = n ** d;
  const nodes = new Float64Array(count * d);
  const weights = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let w = 1;
    for (let a = 0, rest = i; a < d; a++, rest = Math.floor(rest / n)) {
      nodes[i * d + a] = rule.nodes[rest % n];
      w *= rule.weights[rest % n];
    }
    weights[i] = w;
  }
  return { n, nodes, weights };
}
