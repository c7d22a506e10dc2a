/** A cluster-weighted model with 3 covariates, 4 clusters and a gaussian response, and the same data with cells blanked (docs/model.md §17). */
import { createRandom } from '../../lib/math/random.js';

/**
 * n rows of x1, x2, x3 from 4 clusters (means 3 apart on one or two axes, unit spread) with
 * y = θ_kᵀ[x; 1] + N(0, 0.5²), the regression on the clustering columns (the default CWM). Returns
 * the complete CSV, the CSV with `share` of the covariate cells blanked at random (empty or NA,
 * never a whole row's covariates), the true labels and the number of blanked cells per column.
 */
export function missingCwm(n: number, seed: number, share = 0.1) {
  const random = createRandom(seed);
  const means = [[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3]];
  const coefficients = [[1, -1, 0.5, 0], [-1, 0.5, 1, 2], [0.5, 1, -1, -2], [0, -0.5, 1, 1]];
  const labels: number[] = [];
  const blanked = [0, 0, 0];
  const complete = ['x1,x2,x3,y'];
  const holes = ['x1,x2,x3,y'];
  for (let i = 0; i < n; i++) {
    const k = i % 4;
    labels.push(k);
    const x = means[k].map((m) => m + random.normal());
    const y = coefficients[k][3] + x.reduce((s, v, j) => s + coefficients[k][j] * v, 0) + 0.5 * random.normal();
    const cells = x.map((v) => v.toFixed(5));
    complete.push([...cells, y.toFixed(5)].join(','));
    const drop = cells.map(() => random.uniform() < share);
    if (drop.every(Boolean)) drop[random.int(3)] = false;
    holes.push([...cells.map((c, j) => (drop[j] ? (blanked[j]++, j === 1 ? 'NA' : '') : c)), y.toFixed(5)].join(','));
  }
  return { complete: `${complete.join('\n')}\n`, holes: `${holes.join('\n')}\n`, labels, blanked };
}
