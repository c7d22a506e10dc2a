/**
 * Data with shared coefficients (docs/model.md §15): four clusters far apart in (x1, x2), each with
 * its own intercept, and slopes of x1 and x2 common to all. y from the family's link.
 */
import { createRandom } from '../../lib/math/random.js';

export const CENTERS = [[0, 0], [6, 0], [0, 6], [6, 6]];

export const SHARED_TRUTH = {
  gaussian: { slopes: [1.5, -0.8], intercepts: [-3, -1, 1, 3], noise: 0.5 },
  bernoulli: { slopes: [1.0, -0.7], intercepts: [-1.5, -0.5, 0.5, 1.5] },
  // Log rates from −0.5 to 2.9: counts of about 1 to 20.
  poisson: { slopes: [0.2, -0.1], intercepts: [0.5, 0.2, 1.5, 1.3] },
} as const;

export type SharedFamily = keyof typeof SHARED_TRUTH;

/** The CSV text (header x1,x2,y) of n rows. */
export function sharedCsv(n: number, family: SharedFamily, seed: number): string {
  const random = createRandom(seed);
  const truth = SHARED_TRUTH[family];
  const lines = ['x1,x2,y'];
  for (let i = 0; i < n; i++) {
    // Random labels, as rows in a file usually come (periodic ones are tested in test/model.test.ts).
    const g = random.int(4);
    const x = CENTERS[g].map((c) => c + random.normal());
    const eta = truth.intercepts[g] + truth.slopes[0] * x[0] + truth.slopes[1] * x[1];
    const y =
      family === 'gaussian' ? eta + SHARED_TRUTH.gaussian.noise * random.normal()
      : family === 'bernoulli' ? (random.uniform() < 1 / (1 + Math.exp(-eta)) ? 1 : 0)
      : poissonDraw(Math.exp(eta), random.uniform);
    lines.push(`${x[0]},${x[1]},${y}`);
  }
  return lines.join('\n') + '\n';
}

/** A Poisson(mean) draw by inversion (means here are below 30). */
function poissonDraw(mean: number, uniform: () => number): number {
  let k = 0;
  let p = Math.exp(-mean);
  let cdf = p;
  const u = uniform();
  while (u > cdf && k < 1000) {
    k++;
    p *= mean / k;
    cdf += p;
  }
  return k;
}
