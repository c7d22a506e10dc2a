/** Gauss–Hermite rules (lib/math/quadrature.ts): exact where the degree says, and for Gaussian moments in d dimensions. */
import { describe, expect, it } from 'vitest';
import { gaussHermite, productRule } from '../lib/math/quadrature.js';

/** E[z^p], z ~ N(0, 1): 0 for odd p, (p − 1)!! for even p. */
const moment = (p: number) => (p % 2 ? 0 : Array.from({ length: p / 2 }, (_, i) => 2 * i + 1).reduce((a, b) => a * b, 1));

describe('Gauss–Hermite quadrature', () => {
  it('the n-node rule integrates z^p exactly for p ≤ 2n − 1, and not z^(2n) (n > 1)', () => {
    for (let n = 1; n <= 5; n++) {
      const { nodes, weights } = gaussHermite(n);
      const integral = (p: number) => nodes.reduce((s, z, i) => s + weights[i] * z ** p, 0);
      for (let p = 0; p <= 2 * n - 1; p++) expect(integral(p), `n=${n}, p=${p}`).toBeCloseTo(moment(p), 10);
      if (n > 1) expect(Math.abs(integral(2 * n) - moment(2 * n))).toBeGreaterThan(0.5);
    }
    expect(() => gaussHermite(6)).toThrow('1 to 5');
  });

  it('the product rule gives N(0, I_d) moments, E[(aᵀz)²] = ‖a‖², within at most 125 nodes', () => {
    for (let d = 1; d <= 6; d++) {
      const { n, nodes, weights } = productRule(d);
      expect(weights.length).toBe(n ** d);
      expect(weights.length).toBeLessThanOrEqual(125);
      expect(weights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      const a = Array.from({ length: d }, (_, i) => i + 1);
      const second = weights.reduce((s, w, i) => s + w * a.reduce((t, ai, j) => t + ai * nodes[i * d + j], 0) ** 2, 0);
      expect(second).toBeCloseTo(a.reduce((t, ai) => t + ai * ai, 0), 10);
    }
    expect(productRule(3).n).toBe(5);
    expect(productRule(4).n).toBe(3);
  });

  it('E[e^{tz}] = e^{t²/2} to within 1e-3 relative for |t| ≤ 1 with 5 nodes (a smooth, non-polynomial integrand)', () => {
    const { nodes, weights } = gaussHermite(5);
    for (const t of [-1, -0.5, 0.3, 1]) {
      const integral = nodes.reduce((s, z, i) => s + weights[i] * Math.exp(t * z), 0);
      expect(Math.abs(integral / Math.exp((t * t) / 2) - 1)).toBeLessThan(1e-3);
    }
  });
});
