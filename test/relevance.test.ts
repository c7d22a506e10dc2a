/** Covariate relevance (lib/inference/relevance.ts, docs/model.md §13): the evidence and the selection through `fit`. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { adjustedRandIndex } from '../bench/metrics.js';
import { irrelevantDraw } from '../bench/studies/irrelevant.js';
import { parseConfig } from '../lib/config.js';
import { clusteringGain, logBayesFactors, logEvidence, weightedMoments } from '../lib/inference/relevance.js';
import { fitLocal } from '../lib/local/runner.js';
import { cholesky, logDetFromCholesky, inverseFromCholesky, quadraticForm } from '../lib/math/linalg.js';
import { createRandom } from '../lib/math/random.js';
import { lnGamma } from '../lib/math/special.js';
import { PosteriorSchema } from '../lib/schemas.js';
import { tempDir } from './support/cli.js';

const priors = parseConfig({ target: 'y' }).priors;

/** ln St(x | m, L (precision), ν) in d dimensions (PRML 2.162). */
function lnStudent(x: number[], m: Float64Array, precision: Float64Array, nu: number): number {
  const d = x.length;
  const l = cholesky(precision, d);
  const diff = x.map((v, i) => v - m[i]);
  return (
    lnGamma((nu + d) / 2) - lnGamma(nu / 2) + 0.5 * logDetFromCholesky(l, d) - (d / 2) * Math.log(nu * Math.PI) -
    ((nu + d) / 2) * Math.log(1 + quadraticForm(precision, d, diff) / nu)
  );
}

describe('covariate relevance', () => {
  it('ln Z is the log evidence: the sum of the Normal–Wishart posterior predictives of the rows, one after another', () => {
    const random = createRandom(5);
    const d = 2;
    const rows = Array.from({ length: 12 }, () => [1 + random.normal(), -0.5 + 2 * random.normal()]);
    const nu0 = d + priors.extraDegreesOfFreedom;
    const prior = { beta0: priors.meanPrecision, nu0, scale: nu0 * priors.clusterVariance };
    let chain = 0;
    for (let n = 0; n < rows.length; n++) {
      // Posterior after rows < n (PRML 10.60–10.63 with r = 1), then its predictive (PRML 10.81–10.82).
      const m = weightedMoments(Float64Array.from(rows.slice(0, n).flat()), n, d, null, 1).all;
      const N = n;
      const beta = prior.beta0 + N;
      const nu = prior.nu0 + N;
      const mean = Float64Array.from([m[2] / beta, m[5] / beta]);
      const wInverse = new Float64Array(d * d);
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) wInverse[i * d + j] = m[i * 3 + j] - beta * mean[i] * mean[j] + (i === j ? prior.scale : 0);
      const w = inverseFromCholesky(cholesky(wInverse, d), d);
      const dof = nu + 1 - d;
      const precision = w.map((v) => (v * dof * beta) / (1 + beta));
      chain += lnStudent(rows[n], mean, precision, dof);
    }
    const all = weightedMoments(Float64Array.from(rows.flat()), rows.length, d, null, 1).all;
    expect(logEvidence(prior, all, d, [0, 1])).toBeCloseTo(chain, 8);
  });

  it('one component: no covariate gains from being modelled per component (every ln B = 0)', () => {
    const random = createRandom(6);
    const n = 200;
    const D = 3;
    const x = Float64Array.from({ length: n * D }, () => random.normal());
    const moments = weightedMoments(x, n, D, new Float64Array(n).fill(1), 1);
    logBayesFactors(priors, moments, D, [0, 1, 2]).forEach((b) => expect(Math.abs(b)).toBeLessThan(1e-8));
    expect(clusteringGain(priors, moments, D, [])).toBe(0);
  });

  it('a covariate whose weak cluster signal shows only in clusters fitted with it is kept: the forward step refits with it and keeps the higher ELBO', async () => {
    // A studies draw (bench/studies/run.ts irrelevant, draw 7004) where ln B of x1 at the fit on x2
    // alone is negative: the sets repeat at {x2}; refitted on {x1, x2}, the whole-model ELBO rises.
    const dir = tempDir();
    const draw = irrelevantDraw(2000, createRandom(8000 + 7004, 10));
    const file = path.join(dir, 'weak.csv');
    writeFileSync(file, [draw.header.join(','), ...draw.rows.map((r) => r.map((v) => Number(v.toPrecision(8))).join(','))].join('\n') + '\n');
    const result = await fitLocal({ files: [file], config: parseConfig({ target: 'y', assignments: true }), outDir: dir, workers: 0 });
    expect(result.posterior.columns).toEqual(['x1', 'x2']);
    const assigned = readFileSync(result.assignmentsPath!, 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[1]));
    // On x2 alone this draw gave 0.273; the Bayes rule (true parameters) gives 0.363.
    expect(adjustedRandIndex(draw.labels, assigned)).toBeGreaterThan(0.32);
  });

  it('18 covariates from one shared Gaussian are reported irrelevant and the two regressions are found (ARI at least 0.6 of the Bayes rule\'s)', async () => {
    const dir = tempDir();
    const draw = irrelevantDraw(1200, createRandom(8100, 10));
    const file = path.join(dir, 'irrelevant.csv');
    writeFileSync(file, [draw.header.join(','), ...draw.rows.map((r) => r.map((v) => v.toPrecision(8)).join(','))].join('\n') + '\n');
    const config = parseConfig({ target: 'y', assignments: true });
    const result = await fitLocal({ files: [file], config, outDir: dir, workers: 0 });
    const posterior = PosteriorSchema.parse(JSON.parse(readFileSync(result.posteriorPath, 'utf8')));
    const relevance = posterior.covariateRelevance!;
    expect(relevance.map((c) => c.column)).toEqual(draw.header.slice(0, 20));
    // x1, x2 carry a weak cluster signal (means ±0.3 sd apart): relevant or not on 1200 rows; the 18 never.
    for (const c of relevance.slice(2)) expect(c).toMatchObject({ relevant: false, probability: expect.any(Number) });
    for (const c of relevance.slice(2)) expect(c.probability).toBeLessThan(0.01);
    expect(posterior.columns).toEqual(relevance.filter((c) => c.relevant).map((c) => c.column));
    expect(posterior.regressionColumns).toEqual(draw.header.slice(0, 20));
    expect(posterior.components).toHaveLength(2);
    const assigned = readFileSync(result.assignmentsPath!, 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[1]));
    const ceiling = adjustedRandIndex(draw.labels, draw.bayes);
    // 1200 rows and 21 coefficients per regression: short of the Bayes rule (true parameters), far from
    // the one cluster that every covariate modelled per cluster gives (ARI 0).
    expect(adjustedRandIndex(draw.labels, assigned)).toBeGreaterThan(0.6 * ceiling);
    // Each regression's coefficients on x1, x2 and its intercept within 0.5 of one of the truths.
    const truths = draw.coefficients.map(([b1, b2, b0]) => [b1, b2, b0]);
    for (const c of posterior.components) {
      const estimate = [c.coefficients[0], c.coefficients[1], c.intercept];
      expect(Math.min(...truths.map((t) => Math.max(...t.map((v, i) => Math.abs(v - estimate[i])))))).toBeLessThan(0.5);
    }
    const report = readFileSync(result.reportPath, 'utf8');
    expect(report).toContain('Covariate relevance');
    expect(report).toMatch(/modelled as one shared Gaussian: (x1, |x2, )*x3, x4/);
  });
});
