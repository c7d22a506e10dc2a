/** A cluster-weighted model with 3 covariates, 4 clusters and a gaussian (or logistic) response, and the same data with cells blanked (docs/model.md §18). */
import { createRandom } from '../../lib/math/random.js';

/** Cluster means at least 3 apart on every axis: each covariate tells the clusters apart (1.5 sd each way), all three well. */
export const SEPARATED_MEANS = [[0, 6, 3], [3, 0, 9], [6, 9, 0], [9, 3, 6]];
/** The same 4 apart: a missing covariate costs a row's cluster some certainty (2 sd on the other axis). */
export const REDUNDANT_MEANS = [[0, 0, 0], [4, 4, 0], [0, 4, 4], [4, 0, 4]];
/** Cluster means 3 apart on one axis: the missing axis is often the one that told the cluster. */
export const ONE_AXIS_MEANS = [[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3]];

/**
 * n rows of x1, x2, x3 from 4 clusters (the given means, unit spread) with
 * y = θ_kᵀ[x; 1] + N(0, 0.5²), the regression on the clustering columns (the default CWM). Returns
 * the complete CSV, the CSV with `share` of the covariate cells blanked at random (empty or NA,
 * never a whole row's covariates), the true labels, the number of blanked cells per column, and
 * the Bayes rule's labels under the true parameters on the blanked data (x_m integrated out:
 * x_o ~ N(μ_o, I), y | x_o ~ N(θ_0 + θ_oᵀx_o + θ_mᵀμ_m, 0.25 + ‖θ_m‖²)). With `response`
 * 'bernoulli', y is 1 with probability σ(θ_kᵀ[x; 1]) instead; 'multinomial', the class a, b or c as
 * θ_kᵀ[x; 1] + N(0, 0.5²) is below −1, up to 1, or above (and `bayes` is the gaussian's, unused).
 */
export function missingCwm(n: number, seed: number, means: number[][], share = 0.1, response: 'gaussian' | 'bernoulli' | 'multinomial' = 'gaussian') {
  const random = createRandom(seed);
  const coefficients = [[1, -1, 0.5, 0], [-1, 0.5, 1, 2], [0.5, 1, -1, -2], [0, -0.5, 1, 1]];
  const labels: number[] = [];
  const bayes: number[] = [];
  const blanked = [0, 0, 0];
  const complete = ['x1,x2,x3,y'];
  const holes = ['x1,x2,x3,y'];
  for (let i = 0; i < n; i++) {
    const k = i % 4;
    labels.push(k);
    const x = means[k].map((m) => m + random.normal());
    const eta = coefficients[k][3] + x.reduce((s, v, j) => s + coefficients[k][j] * v, 0);
    const yValue = response === 'bernoulli' ? (random.uniform() < 1 / (1 + Math.exp(-eta)) ? 1 : 0) : eta + 0.5 * random.normal();
    const y = response === 'gaussian' ? yValue.toFixed(5) : response === 'bernoulli' ? String(yValue) : yValue < -1 ? 'a' : yValue <= 1 ? 'b' : 'c';
    const cells = x.map((v) => v.toFixed(5));
    complete.push([...cells, y].join(','));
    const drop = cells.map(() => random.uniform() < share);
    if (drop.every(Boolean)) drop[random.int(3)] = false;
    holes.push([...cells.map((c, j) => (drop[j] ? (blanked[j]++, j === 1 ? 'NA' : '') : c)), y].join(','));
    const score = means.map((mean, g) => {
      let s = 0;
      let location = coefficients[g][3];
      let variance = 0.25;
      x.forEach((v, j) => {
        if (drop[j]) {
          location += coefficients[g][j] * mean[j];
          variance += coefficients[g][j] ** 2;
        } else {
          s -= 0.5 * (v - mean[j]) ** 2;
          location += coefficients[g][j] * v;
        }
      });
      return s - 0.5 * Math.log(variance) - (0.5 * (yValue - location) ** 2) / variance;
    });
    bayes.push(score.indexOf(Math.max(...score)));
  }
  return { complete: `${complete.join('\n')}\n`, holes: `${holes.join('\n')}\n`, labels, blanked, bayes };
}
