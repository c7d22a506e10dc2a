/** The known mixture of 3 categorical and 2 numeric covariates (docs/model.md §16), for the unit and end-to-end tests. */
import type { ModelConfigInput } from '../../lib/config.js';
import { createRandom } from '../../lib/math/random.js';

const LEVELS = ['a', 'b', 'c', 'd'];

/** The probability of a cluster's own level of each categorical column. */
const OWN_LEVEL = 0.8;

/**
 * The known mixture: 3 clusters of equal weight; x1, x2 ~ N(mean_k, 1) with means 1.5 apart (they
 * alone overlap); c1, c2, c3 each with 4 levels, the cluster's own level at probability 0.8 and
 * the others at 0.2/3; y = intercept_k + slope_k x1 + N(0, 0.5²). c3 is written as the codes 1–4
 * (numbers: categorical only when listed). Returns the CSV, the true labels, and the Bayes rule's
 * labels under the true parameters with and without the categorical columns.
 */
export function categoricalMixture(n: number, seed: number) {
  const random = createRandom(seed);
  const means = [[0, 0], [1.5, 0], [0, 1.5]];
  const own = [[0, 1, 2], [1, 2, 3], [2, 3, 0]]; // each cluster's likely level per column
  const coefficients = [[1, 2], [-1, 0], [0.5, -2]]; // intercept, slope on x1
  const labels: number[] = [];
  const bayes: number[] = [];
  const bayesNumeric: number[] = [];
  const lines = ['x1,x2,c1,c2,c3,y'];
  for (let i = 0; i < n; i++) {
    const k = i % 3;
    labels.push(k);
    const x1 = means[k][0] + random.normal();
    const x2 = means[k][1] + random.normal();
    const level = (j: number) => {
      const u = random.uniform();
      if (u < OWN_LEVEL) return own[k][j];
      return [0, 1, 2, 3].filter((l) => l !== own[k][j])[Math.min(2, Math.floor(((u - OWN_LEVEL) * 3) / (1 - OWN_LEVEL)))];
    };
    const c = [level(0), level(1), level(2)];
    const y = coefficients[k][0] + coefficients[k][1] * x1 + 0.5 * random.normal();
    lines.push(`${x1.toFixed(5)},${x2.toFixed(5)},${LEVELS[c[0]]},${LEVELS[c[1]]},${c[2] + 1},${y.toFixed(5)}`);
    // The Bayes rule: the most probable cluster under the true parameters, and without the categories.
    const numericPart = [0, 1, 2].map((g) => -0.5 * ((x1 - means[g][0]) ** 2 + (x2 - means[g][1]) ** 2) - 2 * (y - coefficients[g][0] - coefficients[g][1] * x1) ** 2);
    const full = numericPart.map((v, g) => v + c.reduce((s, l, j) => s + Math.log(l === own[g][j] ? OWN_LEVEL : (1 - OWN_LEVEL) / 3), 0));
    bayes.push(full.indexOf(Math.max(...full)));
    bayesNumeric.push(numericPart.indexOf(Math.max(...numericPart)));
  }
  return { labels, bayes, bayesNumeric, csv: `${lines.join('\n')}\n` };
}

/** The configuration the mixture is fitted with: c1 also in the regression (treatment-coded), c3 (numbers) listed as categorical. */
export const MIXTURE_CONFIG: ModelConfigInput = {
  target: 'y',
  columns: ['x1', 'x2', 'c1', 'c2', 'c3'],
  regressionColumns: ['x1', 'c1'],
  categorical: ['c3'],
  components: 8,
};
