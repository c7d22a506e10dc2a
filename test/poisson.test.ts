/** The Poisson family (lib/model/families/poisson.ts): batch VB, the fast kernel, recovery, and the whole pipeline. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adjustedRandIndex } from '../bench/metrics.js';
import { parseConfig, ConfigError } from '../lib/config.js';
import { batchVb } from '../lib/inference/vb.js';
import { loadKernel } from '../lib/kernel/backend.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import type { Batch, Kernel } from '../lib/kernel/types.js';
import { predictFile } from '../lib/local/predict-file.js';
import { Predictor } from '../lib/model/predict.js';
import { renderReport } from '../lib/model/report.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { planRun } from '../lib/pipeline/planner.js';
import { keys } from '../lib/pipeline/protocol.js';
import { encodePosterior, readJson, specOf, type RunState } from '../lib/pipeline/run.js';
import { readOwnedLines } from '../lib/data/csv.js';
import { parseWith, toBatch } from '../lib/data/dataset.js';
import { batchOfRows, responsibilities } from '../lib/rows.js';
import { makeSpec, randomStart } from './support/models.js';
import { drive, inlinePorts } from './support/inline-pipeline.js';
import { expectKernelMatchesReference } from './support/kernel-agreement.js';
import { poissonCsv as csv, poissonCwm } from './support/poisson-data.js';

/** Standardized batch of poissonCwm rows (x and u = [x; 1] on the data's own scale is enough here). */
function batchOf(rows: { x1: number; x2: number; t: number; y: number }[], withOffset: boolean): Batch {
  const n = rows.length;
  const batch: Batch = { n, x: new Float64Array(n * 2), u: new Float64Array(n * 3), y: new Float64Array(n) };
  if (withOffset) batch.offset = new Float64Array(n);
  rows.forEach((r, i) => {
    batch.x.set([r.x1 / 3, r.x2 / 3], 2 * i);
    batch.u.set([r.x1 / 3, r.x2 / 3, 1], 3 * i);
    batch.y[i] = r.y;
    if (batch.offset) batch.offset[i] = Math.log(r.t);
  });
  return batch;
}


describe('poisson: batch VB', () => {
  for (const v of [
    { name: 'cluster-weighted', o: {}, offset: false },
    { name: 'conditional-only, with an exposure', o: { covariateModel: false }, offset: true },
    { name: 'dirichlet weights', o: { weights: 'dirichlet' as const }, offset: false },
  ]) {
    it(`never decreases the ELBO (natural-gradient steps, halved when they overshoot): ${v.name}`, () => {
      const spec = makeSpec(2, 3, { family: 'poisson', ...v.o });
      const batch = batchOf(poissonCwm(900, 3, v.offset).rows, v.offset);
      const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 60, tolerance: 0 });
      for (let i = 1; i < fit.trace.length; i++) expect(fit.trace[i]).toBeGreaterThanOrEqual(fit.trace[i - 1]);
      expect(fit.trace[fit.trace.length - 1]).toBeGreaterThan(fit.trace[0]);
    });
  }
});

describe('poisson: batch sweeps through the pipeline', () => {
  for (const v of [
    { name: 'cluster-weighted', o: {}, offset: false },
    { name: 'conditional-only, with an exposure', o: { covariateModel: false, exposure: 't' }, offset: true },
    { name: 'dirichlet weights', o: { weights: 'dirichlet' as const }, offset: false },
  ]) {
    it(`never lower the ELBO: a step that overshoots is halved (${v.name})`, async () => {
      const ctx = inlinePorts();
      await ctx.store.put('datasets/counts/data/a.csv', csv(poissonCwm(900, 3, v.offset).rows));
      const config = parseConfig({
        target: 'y', family: 'poisson', columns: ['x1', 'x2'], components: 3, ...v.o,
        schedule: { shardRows: 300, tolerance: 1e-10, maxSweeps: 60 },
      });
      const manifest = await planRun(ctx, { dataset: 'counts', config }, ctx.kernel);
      // Start the sweeps from a random partition whose rates are 50 times too low: a full Newton
      // step from there, (y − μ)/μ ≈ 49 on the log scale, overshoots.
      const spec = specOf(manifest);
      const file = manifest.files[0];
      const bytes = await readOwnedLines(ctx.store, file.key, file.dataStart, file.size, file.dataStart);
      const start = (await readJson<RunState>(ctx.store, keys.state('counts', manifest.runId))).value;
      const batch = toBatch(manifest.plan, manifest.standardization, parseWith(manifest.plan, file, bytes));
      const random = randomStart(spec, { ...batch, y: batch.y.map((y) => y / 50) });
      await ctx.store.put(start.posteriorKey, encodePosterior(spec, { version: 0, state: random, trace: [] }));
      expect((await drive(ctx)).status).toBe('done');
      const state = (await readJson<RunState>(ctx.store, keys.state('counts', manifest.runId))).value;
      const doc = (await readJson<{ trace: { phase: string; elbo: number }[] }>(ctx.store, state.resultKey!)).value;
      const sweeps = doc.trace.filter((t) => t.phase === 'batch').map((t) => t.elbo);
      for (let i = 1; i < sweeps.length; i++) expect(sweeps[i]).toBeGreaterThanOrEqual(sweeps[i - 1] - 1e-10 * Math.abs(sweeps[i]));
      // Steps were halved: versions published whose sweeps were rejected (left out of the trace).
      expect(state.version).toBeGreaterThan(sweeps.length - 1);
    });
  }
});

describe.each(['wasm', 'cpu'] as const)('poisson: the tfjs-%s kernel vs the float64 reference', (backend) => {
  let kernel: Kernel;
  beforeAll(async () => {
    kernel = (await loadKernel(backend)) as Kernel;
  });

  for (const withOffset of [false, true]) {
    it(`gives the same statistics and log-likelihood within float32 tolerance${withOffset ? ', with an offset' : ''}`, () => {
      const spec = makeSpec(2, 3, { family: 'poisson' });
      const batch = batchOf(poissonCwm(5000, 7, withOffset).rows, withOffset);
      expectKernelMatchesReference(kernel, spec, batch);
    });
  }
});

describe('poisson: recovery of a known cluster-weighted model', () => {
  it('50 000 rows: ARI ≥ 0.95 against the true clusters, coefficients within 0.1 of the truth', async () => {
    const { rows, theta } = poissonCwm(50_000, 11, true);
    const ctx = inlinePorts(await loadKernel('wasm'));
    await ctx.store.put('datasets/counts/data/a.csv', csv(rows));
    const config = parseConfig({ target: 'y', family: 'poisson', columns: ['x1', 'x2'], exposure: 't', components: 8 });
    const manifest = await planRun(ctx, { dataset: 'counts', config }, ctx.kernel);
    const progress = await drive(ctx);
    expect(progress.status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('counts', manifest.runId))).value;
    const doc = (await readJson<PosteriorDocument>(ctx.store, state.resultKey!)).value;
    expect(doc.family).toBe('poisson');
    expect(doc.components.length).toBe(3);
    const { batch, used } = batchOfRows(doc as never, rows, { withTarget: true });
    expect(used.length).toBe(rows.length);
    const found = responsibilities(doc as never, batch).cluster;
    expect(adjustedRandIndex(rows.map((r) => r.group), Array.from(found))).toBeGreaterThanOrEqual(0.95);
    // Each true cluster's coefficients (data units: log rate per unit of x) against the component holding most of its rows.
    for (let g = 0; g < 3; g++) {
      const votes = new Map<number, number>();
      rows.forEach((r, i) => r.group === g && votes.set(found[i], (votes.get(found[i]) ?? 0) + 1));
      const c = doc.components[[...votes].sort((a, b) => b[1] - a[1])[0][0]];
      expect(Math.abs(c.coefficients[0] - theta[g][0])).toBeLessThan(0.1);
      expect(Math.abs(c.coefficients[1] - theta[g][1])).toBeLessThan(0.1);
      expect(Math.abs(c.intercept - theta[g][2])).toBeLessThan(0.1);
    }
  });
});

describe('poisson: through the pipeline, predict and the report', () => {
  let doc: PosteriorDocument & { trace: never[] };
  const { rows } = poissonCwm(3000, 5, true);
  beforeAll(async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/counts/data/a.csv', csv(rows));
    const config = parseConfig({
      target: 'y', family: 'poisson', columns: ['x1', 'x2'], exposure: 't', components: 6, assignments: true,
      schedule: { shardRows: 500, sviEpochs: 1, shardsPerStep: 2 },
    });
    const manifest = await planRun(ctx, { dataset: 'counts', config }, ctx.kernel);
    expect((await drive(ctx)).status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('counts', manifest.runId))).value;
    doc = (await readJson<typeof doc>(ctx.store, state.resultKey!)).value;
  });
  afterAll(() => {});

  it('writes a poisson posterior.json whose rows are all counted, with the exposure as the offset', () => {
    expect(doc.family).toBe('poisson');
    expect(doc.rows).toBe(rows.length);
    expect(doc.state.plan.offset).toEqual({ column: 't', slot: expect.any(Number), log: true });
    expect(doc.components.every((c) => c.noiseSd === undefined && Number.isFinite(c.intercept))).toBe(true);
  });

  it('predicts mean counts near the observed ones, scaled by the exposure', () => {
    const { batch } = batchOfRows(doc as never, rows, { withTarget: false });
    const p = new Predictor(doc).predict(batch);
    expect(p.sd).toBeDefined();
    const meanY = rows.reduce((s, r) => s + r.y, 0) / rows.length;
    const meanP = p.mean.reduce((s, v) => s + v, 0) / rows.length;
    expect(Math.abs(meanP - meanY) / meanY).toBeLessThan(0.05);
    // Twice the exposure, twice the mean.
    const doubled = batchOfRows(doc as never, rows.slice(0, 10).map((r) => ({ ...r, t: 2 * r.t })), { withTarget: false }).batch;
    const once = new Predictor(doc).predict(batchOfRows(doc as never, rows.slice(0, 10), { withTarget: false }).batch).mean.slice();
    const twice = new Predictor(doc).predict(doubled).mean;
    for (let i = 0; i < 10; i++) expect(twice[i] / once[i]).toBeCloseTo(2, 6);
  });

  it('predict on a file reads the exposure column, and names it when it is missing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'poisson-predict-'));
    try {
      const posterior = { text: JSON.stringify(doc), file: 'posterior.json' };
      const some = rows.slice(0, 20);
      writeFileSync(path.join(dir, 'new.csv'), csv(some));
      const chunks: Buffer[] = [];
      const out = new Writable({ write: (chunk, _encoding, done) => (chunks.push(Buffer.from(chunk)), done()) });
      const result = await predictFile({ posterior, csv: path.join(dir, 'new.csv'), out, workers: 0, backend: 'reference' });
      expect(result.rows).toBe(20);
      const lines = Buffer.concat(chunks).toString().trim().split('\n');
      expect(lines[0]).toBe('x1,x2,t,y,cluster,cluster_probability,prediction,prediction_sd,log_density');
      const { batch } = batchOfRows(doc as never, some, { withTarget: false });
      const expected = new Predictor(doc).predict(batch).mean;
      // The file holds the rows to 5 decimals: the same means to that precision.
      lines.slice(1).forEach((line, i) => expect(Math.abs(Number(line.split(',')[6]) - expected[i]) / expected[i]).toBeLessThan(1e-4));
      writeFileSync(path.join(dir, 'no-t.csv'), 'x1,x2,y\n1,2,3\n');
      await expect(predictFile({ posterior, csv: path.join(dir, 'no-t.csv'), out: new Writable({ write: (_c, _e, done) => done() }), workers: 0 })).rejects.toThrow(
        /no-t\.csv:1: missing column "t" the model was fitted with/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders the report with the log link and the deviance', () => {
    const html = renderReport(doc as never, doc.trace, [], { sample: rows.slice(0, 400) });
    expect(html).toContain('poisson');
    expect(html).toContain('log rate');
    expect(html).toContain('mean Poisson deviance');
  });
});

describe('poisson: settings', () => {
  it('an offset or exposure needs a log-link family, and not both', () => {
    expect(() => parseConfig({ target: 'y', exposure: 't' })).toThrow(ConfigError);
    expect(() => parseConfig({ target: 'y', exposure: 't' })).toThrow(/exposure: needs a family with a log link \(poisson\); the family is "gaussian"/);
    expect(() => parseConfig({ target: 'y', family: 'poisson', exposure: 't', offset: 'o' })).toThrow(/not both/);
    expect(() => parseConfig({ target: 'y', family: 'poisson', exposure: 't', columns: ['t'] })).toThrow(/includes the exposure column "t"/);
  });
});
