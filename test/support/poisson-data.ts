/** Poisson cluster-weighted data for the tests (test/poisson.test.ts, test/e2e/poisson.e2e.test.ts). */
import { createRandom } from '../../lib/math/random.js';

/**
 * A Poisson cluster-weighted model: three clusters of x ∈ R² (sd 0.5 around centres 3 apart),
 * each with its own log-rate θ_gᵀ[x; 1] (+ ln exposure when `exposure`), exposures in [0.5, 2].
 */
export function poissonCwm(n: number, seed: number, exposure = false) {
  const random = createRandom(seed);
  const centres = [[-3, 0], [3, 0], [0, 3]];
  const theta = [[0.3, -0.2, 1.0], [-0.4, 0.1, 2.0], [0.2, 0.4, 0.5]];
  const rows: { x1: number; x2: number; t: number; y: number; group: number }[] = [];
  for (let i = 0; i < n; i++) {
    const group = i % 3;
    const x1 = centres[group][0] + 0.5 * random.normal();
    const x2 = centres[group][1] + 0.5 * random.normal();
    const t = exposure ? 0.5 + 1.5 * random.uniform() : 1;
    const rate = t * Math.exp(theta[group][0] * x1 + theta[group][1] * x2 + theta[group][2]);
    // Poisson by inversion (rates here stay below ~30).
    let y = 0;
    let p = Math.exp(-rate);
    let cdf = p;
    const draw = random.uniform();
    while (draw > cdf && y < 1000) {
      y++;
      p *= rate / y;
      cdf += p;
    }
    rows.push({ x1, x2, t, y, group });
  }
  return { rows, theta };
}

/** The rows as a CSV: x1, x2, the exposure t and the count y. */
export const poissonCsv = (rows: { x1: number; x2: number; t: number; y: number }[]) =>
  Buffer.from(['x1,x2,t,y', ...rows.map((r) => `${r.x1.toFixed(5)},${r.x2.toFixed(5)},${r.t.toFixed(5)},${r.y}`)].join('\n') + '\n');
