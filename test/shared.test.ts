/**
 * Shared coefficients (config sharedCoefficients, docs/model.md §15): one slope vector common to
 * every cluster, an intercept per cluster. The tied posterior's own properties, and recovery
 * through the whole local fit (posterior.json, the CLI table, predict).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/config.js';
import { batchUpdate, localSums, paramsFor } from '../lib/inference/vb.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import { fitLocal } from '../lib/local/runner.js';
import { derive, klDivergence } from '../lib/model/posterior.js';
import { PosteriorSchema } from '../lib/schemas.js';
import { makeBatch, makeSpec, randomStart } from './support/models.js';
import { runCli, tempDir } from './support/cli.js';
import { badValues } from './support/posterior-check.js';
import { CENTERS, SHARED_TRUTH, sharedCsv, type SharedFamily } from './support/shared-data.js';

const sharedData = (file: string, n: number, family: SharedFamily, seed: number) => writeFileSync(file, sharedCsv(n, family, seed));

describe('configuration', () => {
  it('names a shared coefficient that is not a regression column, or that is the target', () => {
    expect(() => parseConfig({ target: 'y', regressionColumns: ['a'], sharedCoefficients: ['b'] }, 'fit.json')).toThrow(
      'fit.json: invalid model configuration: sharedCoefficients: "b" is not one of the regression columns (a)',
    );
    expect(() => parseConfig({ target: 'y', sharedCoefficients: ['y'] })).toThrow('sharedCoefficients: "y" is the target column');
    expect(() => parseConfig({ target: 'y', sharedCoefficients: ['a', 'a'] })).toThrow('sharedCoefficients: lists a column more than once');
    expect(parseConfig({ target: 'y', regressionColumns: ['a', 'b'], sharedCoefficients: ['b'] }).sharedCoefficients).toEqual(['b']);
  });
});

describe('the tied posterior', () => {
  it('with one component, sharing changes nothing for bernoulli and poisson (the joint is the untied posterior)', () => {
    for (const family of ['bernoulli', 'poisson'] as const) {
      const untied = makeSpec(2, 3, { family, components: 1 });
      const tied = { ...untied, shared: [0, 1] };
      const batch = makeBatch(untied, 400, 3, 1);
      const state = randomStart(untied, batch);
      const [a, b] = [derive(untied, state), derive(tied, state)];
      expect(b.shared?.mean).toHaveLength(2);
      for (let i = 0; i < a.coef.length; i++) expect(b.coef[i]).toBeCloseTo(a.coef[i], 10);
      for (let i = 0; i < a.coefCovariance.length; i++) expect(b.coefCovariance[i]).toBeCloseTo(a.coefCovariance[i], 10);
      expect(klDivergence(b, state)).toBeCloseTo(klDivergence(a, state), 8);
    }
  });

  it('gaussian: the shared slopes are a fixed point of their coordinate update, and each component\'s own part of its update', () => {
    const spec = { ...makeSpec(2, 3, { components: 4 }), shared: [1] };
    const batch = makeBatch(spec, 800, 5, 3);
    let state = randomStart(spec, batch);
    for (let i = 0; i < 5; i++) state = batchUpdate(spec, state, localSums(referenceKernel, paramsFor(spec, state), [{ n: batch.n, data: batch }]).stats);
    const d = derive(spec, state);
    const { T, P } = spec;
    const L = d.layout;
    // q(β) | q(b, τ): Λ_β m = Σ_k E[τ_k] (h_k,A − U_k,AB E[b_k]) with U = λ − λ0 (Λ0 = c I: no off-diagonal prior).
    const c = spec.priors.coefficientPrecision;
    let precision = c;
    let rhs = 0;
    for (let k = 0; k < T; k++) {
      const tau = d.response[2 * k] / d.response[2 * k + 1];
      const suu = state.lambda.subarray(L.suu + k * P * P, L.suu + (k + 1) * P * P);
      precision += tau * (suu[1 * P + 1] - c);
      let cross = 0;
      for (const j of [0, 2]) cross += suu[1 * P + j] * d.coef[k * P + j];
      rhs += tau * (state.lambda[L.syu + k * P + 1] - cross);
    }
    expect(d.shared!.covariance[0]).toBeCloseTo(1 / precision, 10);
    expect(d.shared!.mean[0]).toBeCloseTo(rhs / precision, 8);
    for (let k = 0; k < T; k++) {
      expect(d.coef[k * P + 1]).toBe(d.shared!.mean[0]);
      // q(b_k, τ_k) | q(β): E[b_k] = J_bb⁻¹ (h_B − U_BA m), J_bb = λ's own block (prior included), B = {0, 2}.
      const suu = state.lambda.subarray(L.suu + k * P * P, L.suu + (k + 1) * P * P);
      const m = d.shared!.mean[0];
      const [j00, j02, j22] = [suu[0], suu[2], suu[2 * P + 2]];
      const r0 = state.lambda[L.syu + k * P] - suu[1] * m;
      const r2 = state.lambda[L.syu + k * P + 2] - suu[2 * P + 1] * m;
      const det = j00 * j22 - j02 * j02;
      expect(d.coef[k * P]).toBeCloseTo((j22 * r0 - j02 * r2) / det, 8);
      expect(d.coef[k * P + 2]).toBeCloseTo((j00 * r2 - j02 * r0) / det, 8);
    }
  });
});

describe('recovery: four clusters with their own intercepts and one global slope vector', () => {
  for (const [family, n] of [['gaussian', 20_000], ['bernoulli', 40_000], ['poisson', 20_000]] as const) {
    it(`${family}, ${n} rows: shared slopes within 0.05 of the truth, reported once`, async () => {
      const dir = tempDir();
      const file = path.join(dir, 'shared.csv');
      sharedData(file, n, family, 21);
      const truth = SHARED_TRUTH[family];
      const config = parseConfig({ target: 'y', family, components: 8, sharedCoefficients: ['x1', 'x2'], schedule: { shardRows: 10_000 } });
      const result = await fitLocal({ files: [file], config, outDir: dir, workers: 2 });
      const posterior = result.posterior;
      expect(posterior.rows).toBe(n);
      // Reported once: one shared entry, no per-cluster slope.
      expect(posterior.shared?.columns).toEqual(['x1', 'x2']);
      posterior.shared!.coefficients.forEach((b, j) => expect(Math.abs(b - truth.slopes[j]), `slope ${j}: ${b}`).toBeLessThan(0.05));
      posterior.shared!.coefficientSd.forEach((sd) => expect(sd).toBeGreaterThan(0));
      const big = posterior.components.filter((c) => c.weight > 0.05);
      expect(big).toHaveLength(4);
      // Each component keeps its whole regression (docs/library.md): a shared column's entry is the shared slope.
      for (const c of posterior.components)
        c.coefficients.forEach((b, j) => {
          expect(b).toBeCloseTo(posterior.shared!.coefficients[j], 12);
          expect(c.coefficientSd[j]).toBeCloseTo(posterior.shared!.coefficientSd[j], 12);
        });
      // Each cluster's intercept (at x = 0, up to 8.5 column sds away from the far cluster) within 3 posterior sds.
      const byMean = (c: (typeof big)[number]) => CENTERS.findIndex((m) => Math.hypot(m[0] - c.mean![0], m[1] - c.mean![1]) < 0.5);
      expect(big.map(byMean).sort()).toEqual([0, 1, 2, 3]);
      for (const c of big) expect(Math.abs(c.intercept - truth.intercepts[byMean(c)])).toBeLessThan(3 * c.interceptSd);
      // The file on disk: valid against the published schema, every number finite.
      const text = readFileSync(path.join(dir, 'posterior.json'), 'utf8');
      expect(badValues(text)).toEqual([]);
      expect(PosteriorSchema.parse(JSON.parse(text)).shared?.coefficients).toEqual(posterior.shared!.coefficients);
      if (family === 'gaussian') {
        // Criteria count the 2 shared slopes once: 4 components × (2 + 3 (covariates) + 2 (intercept, noise)) + 3 weights + 2.
        const criteria = (posterior as { criteria?: { parameters: number } }).criteria!;
        expect(criteria.parameters).toBe(3 + 4 * (2 + 3 + 2) + 2);
      }
    });
  }

  it('the CLI: --shared-coefficients fits, prints the shared slopes once and predict uses them; a name that is not a regression column is an error naming it', () => {
    const dir = tempDir();
    const file = path.join(dir, 'shared.csv');
    sharedData(file, 4000, 'gaussian', 23);
    const out = path.join(dir, 'out');
    const fit = runCli(['fit', file, '--target', 'y', '--shared-coefficients', 'x1,x2', '--components', '6', '--out', out]);
    expect(fit.stderr).not.toContain('clusterwise:');
    expect(fit.code).toBe(0);
    expect(fit.stdout.match(/shared slopes/g)).toHaveLength(1);
    expect(fit.stdout).toMatch(/shared slopes \(every cluster\): x1=1\.[45]\d* x2=-0\.[78]/);
    const predicted = runCli(['predict', path.join(out, 'posterior.json'), file, '--out', path.join(dir, 'predicted.csv')]);
    expect(predicted.code).toBe(0);
    const rows = readFileSync(path.join(dir, 'predicted.csv'), 'utf8').trim().split('\n');
    const header = rows[0].split(',');
    const [iy, ip] = [header.indexOf('y'), header.indexOf('prediction')];
    let sq = 0;
    for (const line of rows.slice(1)) {
      const v = line.split(',').map(Number);
      sq += (v[iy] - v[ip]) ** 2;
    }
    // The mixture's predictive mean from x alone: within the noise plus a little for the cluster guess.
    expect(Math.sqrt(sq / (rows.length - 1))).toBeLessThan(0.6);

    // One shared slope and one per cluster: the clusters' table lists x2 only, the shared line x1 only.
    const mixed = runCli(['fit', file, '--target', 'y', '--shared-coefficients', 'x1', '--components', '6', '--out', path.join(dir, 'mixed')]);
    expect(mixed.code).toBe(0);
    expect(mixed.stdout).toMatch(/shared slopes \(every cluster\): x1=1\.[45]\d*\n/);
    // cluster, weight, size, mean (x1, x2), intercept, coefficients (x2 alone), noise sd
    const clusters = mixed.stdout.split('\n').filter((line) => /^\d+\s+0\.\d+\s/.test(line));
    expect(clusters.length).toBeGreaterThanOrEqual(4);
    for (const line of clusters) expect(line).toMatch(/^\d+\s+\S+\s+\S+\s+x1=\S+ x2=\S+\s+\S+\s+x2=\S+\s+\S+$/);

    const bad = runCli(['fit', file, '--target', 'y', '--regression-columns', 'x1', '--shared-coefficients', 'x2', '--out', path.join(dir, 'bad')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('sharedCoefficients');
    expect(bad.stderr).toContain('"x2" is not one of the regression columns');
    const notInFile = runCli(['fit', file, '--target', 'y', '--shared-coefficients', 'x3', '--out', path.join(dir, 'bad2')]);
    expect(notInFile.code).not.toBe(0);
    expect(notInFile.stderr).toContain(`${path.basename(file)}:1: column "x3": is listed in sharedCoefficients but is not a regression column`);
  });
});
