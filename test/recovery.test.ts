/** Parameters recovered on data with a known answer, through the whole local pipeline. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FORUM, LOGISTIC, logisticData, NPREG, npregData, writeExample } from '../examples/generate.js';
import { parseConfig } from '../lib/config.js';
import { fitLocal } from '../lib/local/runner.js';
import { fit } from '../lib/api.js';
import { leastSquares } from '../bench/metrics.js';
import { createRandom } from '../lib/math/random.js';
import type { ComponentSummary } from '../lib/model/summary.js';
import { runCli, tempDir } from './support/cli.js';

/** For each true cluster, the reported component closest to it. */
function matchBy<T>(truth: T[], components: ComponentSummary[], distance: (t: T, c: ComponentSummary) => number) {
  return truth.map((t) => components.reduce((best, c) => (distance(t, c) < distance(t, best) ? c : best)));
}

const sq = (a: number[], b: number[]) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0);

/** Share of rows whose assigned cluster is the image of their true label under the best matching. */
function assignedRight(assignments: string, labels: number[], componentOf: number[]): number {
  const rows = assignments.trim().split('\n').slice(1).map((l) => l.split(','));
  let right = 0;
  for (const [row, cluster] of rows) if (componentOf[labels[Number(row)]] === Number(cluster)) right++;
  return right / labels.length;
}

describe('recovery on data with a known answer', () => {
  it('the forum example with default settings: four regressions, means and coefficients within 0.05', () => {
    const out = tempDir();
    const r = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', out]);
    expect(r.stderr).not.toContain('clusterwise:');
    expect(r.code).toBe(0);
    const posterior = JSON.parse(readFileSync(path.join(out, 'posterior.json'), 'utf8'));
    expect(posterior.format).toBe('clusterwise/posterior@1');
    expect(posterior.rows).toBe(1000);
    const matched = matchBy([0, 1, 2, 3], posterior.components, (k, c) => sq(FORUM.means[k], c.mean!));
    expect(new Set(matched).size).toBe(4);
    matched.forEach((c, k) => {
      c.mean!.forEach((m, i) => expect(Math.abs(m - FORUM.means[k][i])).toBeLessThan(0.05));
      c.coefficients.forEach((b, i) => expect(Math.abs(b - FORUM.coefficients[k][i])).toBeLessThan(0.05));
    });
    const rest = 1 - matched.reduce((s, c) => s + c.weight, 0);
    expect(rest).toBeLessThan(0.01);
  });

  it('conditional-only mixture of regressions (flexmix NPreg kind): within two posterior sds, ≥ 93% assigned right', async () => {
    const dir = tempDir();
    const data = npregData();
    const file = path.join(dir, 'npreg.csv');
    writeExample(file, data);
    const config = parseConfig({ target: 'y', covariateModel: false, regressionColumns: ['x', 'x2'], assignments: true });
    const result = await fitLocal({ files: [file], config, outDir: dir, workers: 2 });
    const components = result.posterior.components;
    // truth as [coef x, coef x², intercept]
    const matched = matchBy([0, 1], components, (k, c) => sq([...NPREG.coefficients[k]], [...c.coefficients, c.intercept]));
    expect(new Set(matched).size).toBe(2);
    matched.forEach((c, k) => {
      const [b1, b2, b0] = NPREG.coefficients[k];
      expect(Math.abs(c.coefficients[0] - b1)).toBeLessThan(2 * c.coefficientSd[0]);
      expect(Math.abs(c.coefficients[1] - b2)).toBeLessThan(2 * c.coefficientSd[1]);
      expect(Math.abs(c.intercept - b0)).toBeLessThan(2 * c.interceptSd);
    });
    const componentOf = matched.map((c) => components.indexOf(c));
    expect(assignedRight(readFileSync(result.assignmentsPath!, 'utf8'), data.labels, componentOf)).toBeGreaterThanOrEqual(0.93);
  });

  it('NPreg kind, 200 rows, K=2 dirichlet and default stick-breaking: both regressions within 2 of the truth, no spurious component', async () => {
    const dir = tempDir();
    for (const seed of [1, 2, 3]) {
      const file = path.join(dir, `npreg-${seed}.csv`);
      writeExample(file, npregData(100, seed));
      for (const extra of [{ components: 2, weights: 'dirichlet' as const }, {}]) {
        const config = parseConfig({ target: 'y', covariateModel: false, regressionColumns: ['x', 'x2'], ...extra });
        const { posterior } = await fitLocal({ files: [file], config, outDir: dir, workers: 0 });
        expect(posterior.components).toHaveLength(2);
        expect(posterior.converged).toBe(true);
        const matched = matchBy([0, 1], posterior.components, (k, c) => sq([...NPREG.coefficients[k]], [...c.coefficients, c.intercept]));
        expect(new Set(matched).size).toBe(2);
        matched.forEach((c, k) => [...c.coefficients, c.intercept].forEach((v, i) => expect(Math.abs(v - NPREG.coefficients[k][i])).toBeLessThan(2)));
        // Model comparison from the plug-in likelihood: ICL = BIC + 2H ≥ BIC.
        const criteria = (posterior as { criteria?: { bic: number; icl: number } }).criteria!;
        expect(criteria.icl).toBeGreaterThanOrEqual(criteria.bic);
      }
    }
  });

  it('bernoulli response: 4-cluster logistic data, ≥ 95% assigned right, coefficients within 0.3', async () => {
    const dir = tempDir();
    const data = logisticData(60_000);
    const file = path.join(dir, 'logistic.csv');
    writeExample(file, data);
    const config = parseConfig({ target: 'y', family: 'bernoulli', components: 10, assignments: true, schedule: { shardRows: 10_000 } });
    const result = await fitLocal({ files: [file], config, outDir: dir, workers: 2 });
    const components = result.posterior.components;
    expect(result.posterior.rows).toBe(60_000);
    const matched = matchBy([0, 1, 2, 3], components, (k, c) => sq(LOGISTIC.means[k], c.mean!));
    expect(new Set(matched).size).toBe(4);
    matched.forEach((c, k) => {
      const [b1, b2, b0] = LOGISTIC.coefficients[k];
      expect(Math.abs(c.coefficients[0] - b1)).toBeLessThan(0.3);
      expect(Math.abs(c.coefficients[1] - b2)).toBeLessThan(0.3);
      expect(Math.abs(c.intercept - b0)).toBeLessThan(0.3);
    });
    const componentOf = matched.map((c) => components.indexOf(c));
    expect(assignedRight(readFileSync(result.assignmentsPath!, 'utf8'), data.labels, componentOf)).toBeGreaterThanOrEqual(0.95);
  });

  it("a small cluster far from the columns' means gets its own least-squares coefficients, not ones pulled by the intercept's prior", async () => {
    // 1 900 rows around the origin and 100 rows 15 and 5 units off, each cluster with its own tight
    // line (noise sd 1). The small cluster's y is like the large one's, but its steep line
    // extrapolated to the columns' means is about 85 below y's mean: 20 of y's sd.
    const random = createRandom(11, 0);
    const truth = [
      { centre: [0, 0], coefficients: [3, -2, 1], rows: 1900 },
      { centre: [15, 5], coefficients: [6, 0.5, -90], rows: 100 },
    ];
    const rows = truth.flatMap(({ centre, coefficients: [b1, b2, b0], rows: n }) =>
      Array.from({ length: n }, () => {
        const [x1, x2] = centre.map((c) => c + random.normal());
        return { x1, x2, y: b0 + b1 * x1 + b2 * x2 + random.normal() };
      }),
    );
    // Least squares of y on [x1, x2, 1] over the small cluster's own rows, and its standard errors.
    const own = rows.slice(1900);
    const { coefficients: ols, standardErrors: se } = leastSquares(own.map((r) => [r.x1, r.x2, 1]), own.map((r) => r.y));
    // How many standard errors the small component's [slope 1, slope 2, intercept] are off least squares.
    const offBy = async (priors: Record<string, number>) => {
      const { posterior } = await fit(rows, { target: 'y', backend: 'reference', workers: 0, priors });
      expect(posterior.components).toHaveLength(2);
      const small = posterior.components.reduce((a, b) => (a.size < b.size ? a : b));
      expect(small.size).toBeCloseTo(100, 3);
      return [...small.coefficients, small.intercept].map((v, a) => Math.abs(v - ols[a]) / se[a]);
    };
    // Measured: at most 0.08 standard errors off.
    for (const off of await offBy({})) expect(off).toBeLessThan(0.25);
    // With the intercept's precision the slopes' (0.01, the default before), the same fit was pulled
    // 1.3 standard errors off (docs/model.md §11).
    expect(Math.max(...(await offBy({ interceptPrecision: 0.01 })))).toBeGreaterThan(1);
  });
});
