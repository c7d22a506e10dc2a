/** The multinomial family (lib/model/families/multinomial.ts): batch VB, the fast kernel, recovery, predict and the pipeline. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { adjustedRandIndex } from '../bench/metrics.js';
import { fit, predict } from '../lib/api.js';
import { ConfigError, parseConfig } from '../lib/config.js';
import { batchVb } from '../lib/inference/vb.js';
import { loadKernel } from '../lib/kernel/backend.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import type { Batch, Kernel } from '../lib/kernel/types.js';
import { formatSkipped, parseRows } from '../lib/data/csv.js';
import { predictFile } from '../lib/local/predict-file.js';
import { fitLocal } from '../lib/local/runner.js';
import { Predictor } from '../lib/model/predict.js';
import { renderReport } from '../lib/model/report.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { multinomial } from '../lib/model/families/multinomial.js';
import { createRandom } from '../lib/math/random.js';
import { productRule } from '../lib/math/quadrature.js';
import { derive } from '../lib/model/posterior.js';
import { coefficientPriorPrecision, priorCoordinates, specFromConfig, type ModelSpec } from '../lib/model/spec.js';
import { planRun } from '../lib/pipeline/planner.js';
import { keys } from '../lib/pipeline/protocol.js';
import { readJson, type RunState } from '../lib/pipeline/run.js';
import { batchOfRows, responsibilities } from '../lib/rows.js';
import { randomStart } from './support/models.js';
import { drive, inlinePorts } from './support/inline-pipeline.js';
import { expectKernelMatchesReference } from './support/kernel-agreement.js';
import { CLASSES, multinomialCsv as csv, multinomialCwm } from './support/multinomial-data.js';
import { runCli, tempDir } from './support/cli.js';

function specOf(overrides: Record<string, unknown> = {}, T = 5): ModelSpec {
  const config = parseConfig({ target: 'y', family: 'multinomial', components: T, ...overrides });
  return specFromConfig(config, 2, 3, undefined, [], CLASSES.length);
}

/** A batch of multinomialCwm rows: x and u = [x; 1] scaled by 1/3, y the label's index (apple = 0). */
function batchOf(rows: { x1: number; x2: number; y: string }[]): Batch {
  const n = rows.length;
  const batch: Batch = { n, x: new Float64Array(n * 2), u: new Float64Array(n * 3), y: new Float64Array(n) };
  rows.forEach((r, i) => {
    batch.x.set([r.x1 / 3, r.x2 / 3], 2 * i);
    batch.u.set([r.x1 / 3, r.x2 / 3, 1], 3 * i);
    batch.y[i] = CLASSES.indexOf(r.y as (typeof CLASSES)[number]);
  });
  return batch;
}

describe('multinomial: batch VB', () => {
  for (const v of [
    { name: 'cluster-weighted', o: {} },
    { name: 'conditional-only', o: { covariateModel: false } },
    { name: 'dirichlet weights', o: { weights: 'dirichlet' } },
  ]) {
    it(`never decreases the ELBO (Böhning's bound, exact update): ${v.name}`, () => {
      const spec = specOf(v.o, 4);
      const batch = batchOf(multinomialCwm(1200, 3).rows);
      const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 60, tolerance: 0 });
      for (let i = 1; i < fit.trace.length; i++) expect(fit.trace[i]).toBeGreaterThanOrEqual(fit.trace[i - 1] - 1e-9 * Math.abs(fit.trace[i]));
      expect(fit.trace[fit.trace.length - 1]).toBeGreaterThan(fit.trace[0]);
    });
  }
});

describe('multinomial: the bound and its fixed point', () => {
  it('KL(q ‖ p) of the coefficients is 0 at the prior', () => {
    const spec = specOf({ covariateModel: false }, 3);
    const d = derive(spec, { lambda: priorCoordinates(spec), alpha: null });
    expect(multinomial.kl(d, priorCoordinates(spec), 0)).toBeCloseTo(0, 10);
  });

  it('one component: the posterior mean solves the multinomial logit\'s penalized score equation c θ_j = Σ_n (y_nj − softmax_j(Θu_n)) u_n', () => {
    const spec = specOf({ covariateModel: false }, 1);
    const batch = batchOf(multinomialCwm(1500, 8).rows.filter((r) => r.group === 2));
    const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 1000, tolerance: 0 });
    const d = derive(spec, fit.state);
    const theta = multinomial.heads!(d, 0).map((h) => h.coef);
    const c = coefficientPriorPrecision(spec); // Λ0 = diag(c): the slopes', then the intercept's
    const P = 3;
    const score = theta.map((t) => Float64Array.from(t, (v, i) => -c[i] * v));
    let scale = 0;
    for (let n = 0; n < batch.n; n++) {
      const u = batch.u.subarray(n * P, (n + 1) * P);
      const eta = theta.map((t) => t.reduce((s, v, i) => s + v * u[i], 0));
      const total = 1 + eta.reduce((s, e) => s + Math.exp(e), 0);
      eta.forEach((e, j) => {
        const residual = (batch.y[n] === j + 1 ? 1 : 0) - Math.exp(e) / total;
        for (let i = 0; i < P; i++) score[j][i] += residual * u[i];
        scale += Math.abs(u[0]);
      });
    }
    // At λ = λ0 + S with ψ = E[η]: c Θ + Σ_n A m_n ⊗ u_n = Σ_n (y_n + A m_n − g(m_n)) ⊗ u_n, the A terms cancel.
    const worst = Math.max(...score.flatMap((row) => Array.from(row, Math.abs)));
    expect(worst).toBeLessThan(1e-7 * scale);
  });
});

describe.each(['wasm', 'cpu'] as const)('multinomial: the tfjs-%s kernel (its reference fallback) vs the float64 reference', (backend) => {
  let kernel: Kernel;
  beforeAll(async () => {
    kernel = (await loadKernel(backend)) as Kernel;
  });

  it('gives the same statistics and log-likelihood within float32 tolerance', () => {
    const spec = specOf({}, 4);
    const batch = batchOf(multinomialCwm(4000, 7).rows);
    expectKernelMatchesReference(kernel, spec, batch);
  });
});

describe('multinomial: class probabilities over a random input (a missing regression input, docs/model.md §18)', () => {
  // One component, M = 2 non-reference classes, P = 3 (x1, x2, 1): Θ (M, P), then the lower factors C_a, C_b.
  const M = 2;
  const P = 3;
  const diagonal = (v: number) => Array.from({ length: P * P }, (_, i) => (i % (P + 1) === 0 ? v : 0));
  const parameters = Float64Array.from([1.5, -2, 0.3, -1, 1.2, -0.2, ...diagonal(0.3), ...diagonal(0.2)]);
  const classes = (u: Float64Array, weight = 1, acc = new Float64Array(M + 1)) => {
    multinomial.predictive.add(acc, weight, 0, 0, 0, 0, u, parameters);
    return acc;
  };

  it('the product rule over the input (what predict does) matches Monte Carlo; the input at its mean does not, as the classes\' predictors move together', () => {
    const mean = Float64Array.from([0.5, 0.2, 1]);
    const sd = Math.sqrt(1.2); // x2 missing, conditional variance 1.2
    const random = createRandom(5, 0);
    const draws = 40_000;
    const mc = new Float64Array(M + 1);
    for (let s = 0; s < draws; s++) classes(Float64Array.from([mean[0], mean[1] + sd * random.normal(), 1]), 1 / draws, mc);
    const rule = productRule(1);
    const integrated = new Float64Array(M + 1);
    rule.weights.forEach((w, i) => classes(Float64Array.from([mean[0], mean[1] + sd * rule.nodes[i], 1]), w, integrated));
    const atMean = classes(mean);
    const error = (p: Float64Array) => Math.max(...Array.from(p, (v, c) => Math.abs(v - mc[c])));
    expect(integrated.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(error(integrated)).toBeLessThan(0.01); // measured 0.006 (Monte Carlo's own sd about 0.002)
    expect(error(atMean)).toBeGreaterThan(0.08); // measured 0.10: the reference class goes the other way
  });
});

describe('multinomial: recovery of a known cluster-weighted model', () => {
  it('60 000 rows, 4 clusters, 3 classes: ARI ≥ 0.95, every coefficient within 0.3 of the truth', async () => {
    const { rows, theta } = multinomialCwm(60_000, 11);
    const ctx = inlinePorts(await loadKernel('wasm'));
    await ctx.store.put('datasets/fruit/data/a.csv', csv(rows));
    const config = parseConfig({ target: 'y', family: 'multinomial', columns: ['x1', 'x2'], components: 8 });
    const manifest = await planRun(ctx, { dataset: 'fruit', config }, ctx.kernel);
    const progress = await drive(ctx);
    expect(progress.status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('fruit', manifest.runId))).value;
    const doc = (await readJson<PosteriorDocument>(ctx.store, state.resultKey!)).value;
    expect(doc.family).toBe('multinomial');
    expect(doc.components.length).toBe(4);
    const { batch, used } = batchOfRows(doc as never, rows, { withTarget: true });
    expect(used.length).toBe(rows.length);
    const found = responsibilities(doc as never, batch).cluster;
    const ari = adjustedRandIndex(rows.map((r) => r.group), Array.from(found));
    expect(ari).toBeGreaterThanOrEqual(0.95);
    let worst = 0;
    for (let g = 0; g < 4; g++) {
      const votes = new Map<number, number>();
      rows.forEach((r, i) => r.group === g && votes.set(found[i], (votes.get(found[i]) ?? 0) + 1));
      const c = doc.components[[...votes].sort((a, b) => b[1] - a[1])[0][0]];
      c.classes!.forEach((fitted, j) => {
        expect(fitted.class).toBe(CLASSES[j + 1]);
        const got = [...fitted.coefficients, fitted.intercept];
        for (let i = 0; i < 3; i++) worst = Math.max(worst, Math.abs(got[i] - theta[g][j][i]));
      });
    }
    console.log(`multinomial recovery: ARI ${ari.toFixed(4)}, largest coefficient error ${worst.toFixed(3)}`);
    expect(worst).toBeLessThan(0.3);
  });
});

describe('multinomial: through the pipeline, posterior.json, predict and the report', () => {
  let doc: PosteriorDocument & { trace: never[] };
  const { rows } = multinomialCwm(4000, 5);
  beforeAll(async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/fruit/data/a.csv', csv(rows));
    const config = parseConfig({
      target: 'y', family: 'multinomial', columns: ['x1', 'x2'], components: 6,
      schedule: { shardRows: 500, sviEpochs: 1, shardsPerStep: 2 },
    });
    const manifest = await planRun(ctx, { dataset: 'fruit', config }, ctx.kernel);
    expect((await drive(ctx)).status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('fruit', manifest.runId))).value;
    doc = (await readJson<typeof doc>(ctx.store, state.resultKey!)).value;
  });

  it('carries the class labels, sorted, in the plan and one regression per non-reference class in each component', () => {
    expect(doc.family).toBe('multinomial');
    expect(doc.rows).toBe(rows.length);
    expect(doc.state.plan.select[doc.state.plan.ySlot]).toMatchObject({ column: 'y', kind: 'category', levels: [...CLASSES] });
    for (const c of doc.components) {
      expect(c.classes!.map((h) => h.class)).toEqual(['banana', 'cherry']);
      // The component's own intercept and coefficients are the first class's.
      expect(c.intercept).toBe(c.classes![0].intercept);
      expect(c.coefficients).toEqual(c.classes![0].coefficients);
      expect(c.classes!.every((h) => h.coefficientSd.every((sd) => sd > 0 && sd < 1))).toBe(true);
    }
  });

  it('predicts one probability per class, summing to 1, and the most probable class; better than always the commonest class', () => {
    const { batch } = batchOfRows(doc as never, rows, { withTarget: true });
    const p = new Predictor(doc, undefined, { logDensity: true }).predict(batch);
    const C = CLASSES.length;
    let right = 0;
    for (let n = 0; n < batch.n; n++) {
      const probs = Array.from(p.probabilities!.subarray(n * C, (n + 1) * C));
      expect(probs.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
      expect(p.mean[n]).toBe(probs.indexOf(Math.max(...probs)));
      expect(p.logDensity![n]).toBeLessThanOrEqual(0);
      if (p.mean[n] === batch.y[n]) right++;
    }
    const commonest = Math.max(...CLASSES.map((label) => rows.filter((r) => r.y === label).length));
    expect(right).toBeGreaterThan(commonest + 0.05 * rows.length);
  });

  it('predict on a file writes the label and a probability column per class; an unseen label in the target column scores the row without a log density', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'multinomial-predict-'));
    try {
      const posterior = { text: JSON.stringify(doc), file: 'posterior.json' };
      const some = rows.slice(0, 20).map((r, i) => (i === 4 ? { ...r, y: 'durian' } : r));
      writeFileSync(path.join(dir, 'new.csv'), csv(some));
      const chunks: Buffer[] = [];
      const out = new Writable({ write: (chunk, _encoding, done) => (chunks.push(Buffer.from(chunk)), done()) });
      const result = await predictFile({ posterior, csv: path.join(dir, 'new.csv'), out, workers: 0, backend: 'reference' });
      expect(result.rows).toBe(20);
      expect(result.logDensity!.rows).toBe(19);
      const lines = Buffer.concat(chunks).toString().trim().split('\n');
      expect(lines[0]).toBe('x1,x2,y,cluster,cluster_probability,prediction,probability_apple,probability_banana,probability_cherry,log_density');
      expect(lines[5].endsWith(',')).toBe(true); // the durian row: no log density
      const { batch } = batchOfRows(doc as never, some, { withTarget: false });
      const expected = new Predictor(doc).predict(batch);
      lines.slice(1).forEach((line, i) => {
        const cells = line.split(',');
        expect(cells[5]).toBe(CLASSES[expected.mean[i]]);
        for (let c = 0; c < 3; c++) expect(Math.abs(Number(cells[6 + c]) - expected.probabilities![i * 3 + c])).toBeLessThan(1e-4);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a worker skips a row whose label the planner\'s sample did not have, naming file, line, column and label', () => {
    const plan = doc.state.plan;
    const header = ['x1', 'x2', 'y'];
    const parsed = parseRows(Buffer.from('0.1,0.2,banana\n0.3,0.4,durian\n'), { file: 'b.csv', header, select: plan.select, firstLine: 2 });
    expect(parsed.rows).toBe(1);
    expect(formatSkipped(parsed.skipped[0])).toMatch(/^b\.csv:3: column "y": "durian" is not a level of the column in the planner's sample \(3 levels: "apple", "banana", "cherry"\)/);
  });

  it('a label the fit did not see is an error naming it when scoring rows in memory', () => {
    expect(() => batchOfRows(doc as never, [{ ...rows[0], y: 'durian' }], { withTarget: true })).toThrow(/"durian" is not a level the model was fitted with/);
  });

  it('renders the report with each class\'s regression and the accuracy', () => {
    const html = renderReport(doc as never, doc.trace, [], { sample: rows.slice(0, 400) });
    expect(html).toContain('multinomial');
    expect(html).toContain('banana: intercept');
    expect(html).toContain('accuracy');
  });

  it('refuses shared coefficients in the configuration, naming the setting, before any data is read', () => {
    expect(() => parseConfig({ target: 'y', family: 'multinomial', columns: ['x1', 'x2'], sharedCoefficients: ['x1'], components: 3 })).toThrow(ConfigError);
    expect(() => parseConfig({ target: 'y', family: 'multinomial', columns: ['x1', 'x2'], sharedCoefficients: ['x1'], components: 3 })).toThrow(
      /sharedCoefficients: not available for the multinomial family/,
    );
  });
});

describe('multinomial: a label the planner\'s sample did not see', () => {
  it('skips its row in the fit, reported with file, line, column and label', async () => {
    const dir = tempDir();
    try {
      const lines = csv(multinomialCwm(4000, 13).rows).toString().trim().split('\n');
      // Beyond the first 64 KiB the planner reads whole and between the windows of the 100-row sample.
      const line = 3950;
      lines[line - 1] = lines[line - 1].replace(/[a-z]+$/, 'durian');
      const file = path.join(dir, 'rare.csv');
      writeFileSync(file, `${lines.join('\n')}\n`);
      const config = parseConfig({ target: 'y', family: 'multinomial', columns: ['x1', 'x2'], components: 6, schedule: { sampleRows: 100 } });
      const { posterior } = await fitLocal({ files: [file], config, outDir: dir, workers: 0, backend: 'reference' });
      expect(posterior.state.plan.select[posterior.state.plan.ySlot].levels).toEqual([...CLASSES]);
      expect(posterior.rows).toBe(3999);
      expect(posterior.skippedRows).toBe(1);
      expect(posterior.skipped[0]).toMatchObject({ file, line, column: 'y', value: 'durian' });
      expect((posterior.skipped[0] as { reason: string }).reason).toContain('not a level of the column in the planner\'s sample (3 levels: "apple", "banana", "cherry")');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('multinomial: the library', () => {
  it('fit on records with string labels, then predict gives each row\'s class and a probability per label', async () => {
    const { rows } = multinomialCwm(2000, 12);
    const { posterior } = await fit(rows.map(({ x1, x2, y }) => ({ x1, x2, y })), { target: 'y', family: 'multinomial', components: 6, workers: 0, backend: 'reference' });
    expect(posterior.family).toBe('multinomial');
    const scored = await predict(posterior, [{ x1: 2, x2: 0 }, { x1: 'oops', x2: 0 }, { x1: -2, x2: 0.1 }]);
    expect(scored.rows).toBe(2);
    expect(scored.predictedClass![1]).toBeNull();
    expect(Object.keys(scored.classProbabilities!)).toEqual([...CLASSES]);
    for (const i of [0, 2]) {
      const probs = CLASSES.map((label) => scored.classProbabilities![label][i]);
      expect(probs.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
      expect(scored.predictedClass![i]).toBe(CLASSES[probs.indexOf(Math.max(...probs))]);
      expect(scored.prediction[i]).toBe(probs.indexOf(Math.max(...probs)));
    }
  });
});

describe('multinomial: the command line', () => {
  it('fit --family multinomial prints each class\'s regression against the reference; predict writes a probability per class', () => {
    const dir = tempDir('clusterwise-multinomial-cli-');
    try {
      const data = path.join(dir, 'fruit.csv');
      writeFileSync(data, csv(multinomialCwm(2000, 6).rows));
      const out = path.join(dir, 'out');
      const fit = runCli(['fit', data, '--target', 'y', '--family', 'multinomial', '--components', '6', '--out', out, '--workers', '0']);
      expect(fit.stderr).not.toMatch(/error/i);
      expect(fit.code).toBe(0);
      expect(fit.stdout).toContain('banana vs apple intercept=');
      expect(fit.stdout).toContain('cherry vs apple intercept=');
      const doc = JSON.parse(readFileSync(path.join(out, 'posterior.json'), 'utf8')) as PosteriorDocument;
      expect(doc.family).toBe('multinomial');
      const scored = path.join(dir, 'scored.csv');
      const predict = runCli(['predict', path.join(out, 'posterior.json'), data, '--out', scored]);
      expect(predict.code).toBe(0);
      const lines = readFileSync(scored, 'utf8').trim().split('\n');
      expect(lines[0]).toBe('x1,x2,y,cluster,cluster_probability,prediction,probability_apple,probability_banana,probability_cherry,log_density');
      expect(lines.length).toBe(2001);
      expect(CLASSES).toContain(lines[1].split(',')[5]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
