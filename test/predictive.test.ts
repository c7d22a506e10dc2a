/**
 * The predictive distribution of `predict` (issue 8 item 5, docs/model.md §10): intervals that
 * cover what they say on held-out rows, a mixture log density that beats the mean/sd summary,
 * clusters from p(z | x, y), and clear errors for options that cannot apply. The data and the
 * measures are bench/studies/predictive.ts's (which prints them over many draws).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { agreement, cwmCsv, gaussianSummaryLogDensity, scoredRows as scored } from '../bench/studies/predictive.js';
import { fit, predict } from '../lib/api.js';
import { mixtureQuantile, studentTLogNormalizer, studentTQuantile } from '../lib/model/predictive.js';
import { checkPredictOptions } from '../lib/model/predict.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { runCli, tempDir } from './support/cli.js';

const dir = tempDir();

describe('the predictive distribution on held-out CWM data (fit on one draw, predict on another)', () => {
  const overlapping = { train: path.join(dir, 'train.csv'), test: path.join(dir, 'test.csv'), posterior: path.join(dir, 'fit', 'posterior.json') };
  let labels: number[] = [];

  beforeAll(async () => {
    cwmCsv(overlapping.train, 4000, 1, 1.5);
    labels = cwmCsv(overlapping.test, 5000, 2, 1.5);
    await fit(overlapping.train, { target: 'y', outDir: path.join(dir, 'fit'), workers: 0 });
  }, 120_000);

  it('a 90% interval covers 88–92% of held-out rows, and its width follows the mixture', async () => {
    const { names, rows } = await scored(overlapping.posterior, overlapping.test, { interval: 0.9 });
    expect(names.slice(-3)).toEqual(['prediction_lo', 'prediction_hi', 'log_density']);
    const covered = rows.filter((r) => r.y >= r.prediction_lo && r.y <= r.prediction_hi).length / rows.length;
    expect(covered).toBeGreaterThanOrEqual(0.88);
    expect(covered).toBeLessThanOrEqual(0.92);
    // An interval twice as probable is wider on every row (the quantiles are monotone).
    const wide = await scored(overlapping.posterior, overlapping.test, { interval: 0.99 });
    expect(rows.every((r, i) => wide.rows[i].prediction_lo < r.prediction_lo && wide.rows[i].prediction_hi > r.prediction_hi)).toBe(true);
    // The library gives the same interval.
    const library = await predict(overlapping.posterior, rows.slice(0, 200).map((r) => ({ x: r.x })), { interval: 0.9 });
    rows.slice(0, 200).forEach((r, i) => {
      expect(library.predictionLo![i]).toBeCloseTo(r.prediction_lo, 5);
      expect(library.predictionHi![i]).toBeCloseTo(r.prediction_hi, 5);
    });
  }, 60_000);

  it('the mixture log density beats the Gaussian summary (prediction, prediction_sd) on the same rows', async () => {
    const { rows, result } = await scored(overlapping.posterior, overlapping.test);
    const mixture = rows.reduce((s, r) => s + r.log_density, 0);
    const gaussian = gaussianSummaryLogDensity(rows);
    expect(result.logDensity).toMatchObject({ column: 'y', rows: rows.length });
    expect(result.logDensity!.total).toBeCloseTo(mixture, 0); // the total the CLI prints is the column's sum
    expect((mixture - gaussian) / rows.length).toBeGreaterThan(0.05); // nats per row
  }, 60_000);

  it('--cluster: p(z | x, y) finds the true clusters better than p(z | x) where x overlaps, and agrees with them where the clusters are separated', async () => {
    const byX = await scored(overlapping.posterior, overlapping.test);
    const byXY = await scored(overlapping.posterior, overlapping.test, { cluster: true });
    const withY = agreement(byXY.rows.map((r) => r.cluster), labels);
    expect(withY).toBeGreaterThan(agreement(byX.rows.map((r) => r.cluster), labels) + 0.05);

    const train = path.join(dir, 'sep-train.csv');
    const test = path.join(dir, 'sep-test.csv');
    cwmCsv(train, 3000, 3, 8);
    const truth = cwmCsv(test, 2000, 4, 8);
    await fit(train, { target: 'y', outDir: path.join(dir, 'sep'), workers: 0 });
    const separated = await scored(path.join(dir, 'sep', 'posterior.json'), test, { cluster: true });
    expect(agreement(separated.rows.map((r) => r.cluster), truth)).toBeGreaterThan(0.99);
  }, 120_000);

  it('a row without its target is still predicted, with an empty log_density; a file without the target has no log_density', async () => {
    const lines = readFileSync(overlapping.test, 'utf8').trim().split('\n').slice(0, 50);
    lines[3] = lines[3].replace(/,[^,]*$/, ',');
    lines[4] = lines[4].replace(/,[^,]*$/, ',NA');
    lines[5] = lines[5].replace(/,[^,]*$/, ',1e100'); // no component explains it
    const gaps = path.join(dir, 'gaps.csv');
    writeFileSync(gaps, lines.join('\n') + '\n');
    const { rows, result } = await scored(overlapping.posterior, gaps, { cluster: true, interval: 0.5 });
    expect(result).toMatchObject({ rows: 49, skipped: 0, logDensity: { rows: 47 } });
    expect(Number.isNaN(rows[2].log_density) && Number.isNaN(rows[3].log_density)).toBe(true);
    expect(Number.isFinite(rows[2].prediction_lo) && Number.isFinite(rows[2].cluster)).toBe(true);
    expect(rows[4].log_density).toBeLessThan(-1000);
    expect(rows[4].cluster).toBeGreaterThanOrEqual(0);
    const xOnly = path.join(dir, 'x-only.csv');
    writeFileSync(xOnly, lines.map((l) => l.split(',')[0]).join('\n') + '\n');
    const plain = await scored(overlapping.posterior, xOnly, { cluster: true });
    expect(plain.names).toEqual(['x', 'cluster', 'cluster_probability', 'prediction', 'prediction_sd']);
    expect(plain.result.logDensity).toBeUndefined();
  }, 60_000);

  it('options that cannot apply are refused with a message naming them', () => {
    const interval = (value: string) => runCli(['predict', overlapping.posterior, overlapping.test, '--interval', value]);
    for (const value of ['1', '0', '90', '-0.5', '0x1', 'abc']) {
      const r = interval(value);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`--interval must be a probability strictly between 0 and 1 written as a decimal (e.g. 0.9), got "${value}"`);
    }
    const bernoulli = path.join(dir, 'bern.csv');
    writeFileSync(bernoulli, ['x,y', ...Array.from({ length: 400 }, (_, i) => `${(i % 20) - 10},${i % 20 < 10 === (i % 7 === 0) ? 1 : 0}`)].join('\n') + '\n');
    expect(runCli(['fit', bernoulli, '--target', 'y', '--family', 'bernoulli', '--out', path.join(dir, 'bern'), '--workers', '0']).code).toBe(0);
    const posterior = path.join(dir, 'bern', 'posterior.json');
    const r = runCli(['predict', posterior, bernoulli, '--interval', '0.9']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`interval needs a gaussian model, and ${posterior} is bernoulli`);
    // Each family's reason is its own: a multinomial model has class probabilities, not a prediction_sd.
    const family = (name: string) => ({ family: name }) as unknown as PosteriorDocument;
    expect(() => checkPredictOptions(family('multinomial'), { interval: 0.9 }, 'm.json')).toThrow(
      'interval needs a gaussian model, and m.json is multinomial: its class probabilities are already the whole predictive distribution',
    );
    expect(() => checkPredictOptions(family('poisson'), { interval: 0.9 }, 'p.json')).toThrow('p.json is poisson (its prediction_sd describes the spread)');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const ok = runCli(['predict', posterior, bernoulli, '--cluster']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.split('\n')[0]).toBe('x,y,cluster,cluster_probability,probability,log_density');
    expect(ok.stderr).toMatch(/log predictive density of "y" -\d+\.\d+ over 400 rows/);
  }, 120_000);
});

describe('mixture quantiles', () => {
  it('solve Σ w_k T((y − μ_k)/s_k) = p: one component gives its own quantile, two give the root between theirs', () => {
    const dof = [5, 30];
    const logNormalizer = dof.map(studentTLogNormalizer);
    const one = { count: 2, logWeight: [0, -Infinity], loc: [3, -1], scale: [2, 1], dof, logNormalizer };
    const unit = dof.map((v) => studentTQuantile(0.95, v));
    expect(mixtureQuantile(0.95, one, unit)).toBeCloseTo(3 + 2 * studentTQuantile(0.95, 5), 12);
    const two = { ...one, logWeight: [Math.log(0.3), Math.log(0.7)] };
    for (const p of [0.05, 0.5, 0.95]) {
      const q = mixtureQuantile(p, two, dof.map((v) => studentTQuantile(p, v)));
      // The CDF at q by numerical integration of the two densities (independent of the solver's CDF).
      let cdf = 0;
      const step = 1e-3;
      for (let y = -60; y < q; y += step)
        for (let k = 0; k < 2; k++) {
          const z = (y + step / 2 - two.loc[k]) / two.scale[k];
          cdf += Math.exp(two.logWeight[k] + logNormalizer[k] - Math.log(two.scale[k]) - ((dof[k] + 1) / 2) * Math.log1p((z * z) / dof[k])) * step;
        }
      expect(cdf).toBeCloseTo(p, 3);
    }
  });
});
