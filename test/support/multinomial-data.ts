/** Multinomial cluster-weighted data for the tests (test/multinomial.test.ts, test/e2e/multinomial.e2e.test.ts). */
import { createRandom } from '../../lib/math/random.js';

/** The class labels, sorted: "apple" (the first) is the reference class, whose linear predictor is 0. */
export const CLASSES = ['apple', 'banana', 'cherry'] as const;

/**
 * A multinomial-logit cluster-weighted model: four clusters of x ∈ R² (sd 0.5 around centres 2
 * from the origin), each with its own softmax regression on u = [x; 1] with the reference class "apple":
 * P(y = j | x, g) ∝ e^{θ_gjᵀ[x; 1]} for j = banana, cherry, and ∝ 1 for apple. theta[g][j] is
 * [slope x1, slope x2, intercept] of class j + 1 (banana, cherry) in data units.
 */
export function multinomialCwm(n: number, seed: number) {
  const random = createRandom(seed);
  const centres = [[-2, 0], [2, 0], [0, 2], [0, -2]];
  const theta = [
    [[1.0, -0.5, 0.5], [-0.8, 0.6, 0.0]],
    [[-1.0, 0.4, 0.2], [0.5, 1.0, -0.3]],
    [[0.6, 0.8, -0.5], [-0.4, -0.7, 0.8]],
    [[0.0, 1.2, 0.3], [1.1, 0.0, 0.4]],
  ];
  const rows: { x1: number; x2: number; y: string; group: number }[] = [];
  for (let i = 0; i < n; i++) {
    const group = i % 4;
    const x1 = centres[group][0] + 0.5 * random.normal();
    const x2 = centres[group][1] + 0.5 * random.normal();
    // Linear predictors relative to each cluster's centre, so every class is common in every cluster.
    const [c1, c2] = centres[group];
    const eta = [0, ...theta[group].map((t) => t[0] * (x1 - c1) + t[1] * (x2 - c2) + t[2])];
    const weights = eta.map(Math.exp);
    const total = weights.reduce((s, w) => s + w, 0);
    let draw = random.uniform() * total;
    let j = 0;
    while (j < 2 && draw >= weights[j]) draw -= weights[j++];
    rows.push({ x1, x2, y: CLASSES[j], group });
  }
  // The intercepts in data units (η at x = 0): θ_0 − θ_1 c1 − θ_2 c2.
  const truth = theta.map((t, g) => t.map(([a, b, c]) => [a, b, c - a * centres[g][0] - b * centres[g][1]]));
  return { rows, theta: truth };
}

/** The rows as a CSV: x1, x2 and the class label y. */
export const multinomialCsv = (rows: { x1: number; x2: number; y: string }[]) =>
  Buffer.from(['x1,x2,y', ...rows.map((r) => `${r.x1.toFixed(5)},${r.x2.toFixed(5)},${r.y}`)].join('\n') + '\n');
