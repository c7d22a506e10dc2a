/**
 * Categorical covariates (lib/model/covariates/categorical.ts, docs/model.md §16): the factor's
 * mathematics (KL, ELBO monotone, J(S) + H(r), the float32 kernel against the float64 reference),
 * the CSV kind, and a known mixture of 3 categorical and 2 numeric covariates recovered through the
 * local pipeline, the in-memory pipeline roles, posterior.json and predict.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { adjustedRandIndex } from '../bench/metrics.js';
import { parseConfig, type ModelConfigInput } from '../lib/config.js';
import { parseRows } from '../lib/data/csv.js';
import { hardAssignmentStats, initialize, moveProposer } from '../lib/inference/init.js';
import { expectedLogJoint } from '../lib/inference/moves.js';
import { batchUpdate, batchVb, elboOf, localSums, paramsFor, runLocalStep } from '../lib/inference/vb.js';
import { loadKernel } from '../lib/kernel/backend.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import { createTfjsKernel } from '../lib/kernel/tfjs.js';
import type { Batch } from '../lib/kernel/types.js';
import { createRandom } from '../lib/math/random.js';
import { derive, initialAlpha, klDivergence, type GlobalState } from '../lib/model/posterior.js';
import { layoutOf, priorCoordinates, specFromConfig, type ModelSpec } from '../lib/model/spec.js';
import { fitLocal } from '../lib/local/runner.js';
import { predictFile } from '../lib/local/predict-file.js';
import { planRun } from '../lib/pipeline/planner.js';
import { keys } from '../lib/pipeline/protocol.js';
import { readJson, type RunState, type TraceEntry } from '../lib/pipeline/run.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { predict as predictRows } from '../lib/api.js';
import { categoricalMixture, MIXTURE_CONFIG } from './support/categorical.js';
import { drive, inlinePorts } from './support/inline-pipeline.js';
import { tempDir } from './support/cli.js';

/** A spec with D numeric covariates, P regression inputs and `levels` categorical covariates. */
function categoricalSpec(D: number, P: number, levels: number[], overrides: Partial<ModelConfigInput> = {}): ModelSpec {
  return specFromConfig(parseConfig({ target: 'y', components: 5, ...overrides }), D, P, undefined, levels);
}

/** n standardized rows from 3 groups, each with its own level probabilities per categorical column. */
function categoricalBatch(spec: ModelSpec, n: number, seed = 1): Batch {
  const random = createRandom(seed);
  const { D, P } = spec;
  const levels = spec.levels!;
  const x = new Float64Array(n * D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  const categories = new Int32Array(n * levels.length);
  const centers = Array.from({ length: 3 }, () => Array.from({ length: D }, () => 1.5 * random.normal()));
  const coefs = Array.from({ length: 3 }, () => Array.from({ length: P }, () => random.normal()));
  for (let i = 0; i < n; i++) {
    const g = i % 3;
    for (let j = 0; j < D; j++) x[i * D + j] = centers[g][j] + 0.7 * random.normal();
    for (let j = 0; j < P - 1; j++) u[i * P + j] = j < D ? x[i * D + j] : random.normal();
    u[i * P + P - 1] = 1;
    let eta = 0;
    for (let j = 0; j < P; j++) eta += coefs[g][j] * u[i * P + j];
    y[i] = eta + 0.3 * random.normal();
    let offset = 0;
    levels.forEach((L, j) => {
      const level = random.uniform() < 0.6 ? (g + j) % L : random.int(L);
      categories[i * levels.length + j] = offset + level;
      offset += L;
    });
  }
  return { n, x, u, y, categories };
}

function randomStart(spec: ModelSpec, batch: Batch, seed = 2): GlobalState {
  const random = createRandom(seed);
  const labels = Int32Array.from({ length: batch.n }, () => random.int(spec.T));
  return batchUpdate(spec, { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) }, hardAssignmentStats(spec, batch, labels));
}

const variants = [
  { name: 'with numeric covariates', D: 2, levels: [4, 3, 2] },
  { name: 'categorical covariates only', D: 0, levels: [4, 4, 4] },
];

describe('the categorical covariate factor', () => {
  it.each(variants)('KL is zero at the prior and positive elsewhere ($name)', ({ D, levels }) => {
    const spec = categoricalSpec(D, 3, levels);
    const prior = { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) };
    expect(klDivergence(derive(spec, prior), prior)).toBeCloseTo(0, 8);
    const state = randomStart(spec, categoricalBatch(spec, 200, 5));
    expect(klDivergence(derive(spec, state), state)).toBeGreaterThan(0);
  });

  it.each(variants)('batch VB never decreases the ELBO, with merge and delete moves too ($name)', ({ D, levels }) => {
    const spec = categoricalSpec(D, 3, levels);
    const batch = categoricalBatch(spec, 600, 3);
    const data = [{ n: batch.n, data: batch }];
    for (const propose of [undefined, moveProposer(spec)]) {
      const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, data, { maxIterations: 60, tolerance: 0, propose });
      for (let i = 1; i < fit.trace.length; i++) expect(fit.trace[i]).toBeGreaterThanOrEqual(fit.trace[i - 1] - 1e-9 * Math.abs(fit.trace[i - 1]));
      expect(fit.trace[fit.trace.length - 1]).toBeGreaterThan(fit.trace[0]);
    }
  });

  it('J(S) + H(r) is the ELBO of r at λ0 + S: between the ELBO before and after the update (moves.ts bound)', () => {
    const spec = categoricalSpec(2, 3, [4, 3]);
    const batch = categoricalBatch(spec, 300, 4);
    const state = randomStart(spec, batch);
    const step = runLocalStep(referenceKernel, paramsFor(spec, state), batch, { responsibilities: true });
    const before = elboOf(spec, state, step.logLik);
    let entropy = 0;
    for (const r of step.responsibilities!) if (r > 0) entropy -= r * Math.log(r);
    const updated = batchUpdate(spec, state, step.stats);
    const bound = expectedLogJoint(spec, updated, step.stats) + entropy;
    const after = elboOf(spec, updated, localSums(referenceKernel, paramsFor(spec, updated), [{ n: batch.n, data: batch }]).logLik);
    expect(bound).toBeGreaterThanOrEqual(before - 1e-8 * Math.abs(before));
    expect(bound).toBeLessThanOrEqual(after + 1e-8 * Math.abs(after));
  });

  it('the levels block holds Σ_n r_nk [x_nj = l]: each column sums to N_k', () => {
    const spec = categoricalSpec(2, 3, [4, 3, 2]);
    const batch = categoricalBatch(spec, 400, 6);
    const { stats } = runLocalStep(referenceKernel, paramsFor(spec, randomStart(spec, batch)), batch);
    const layout = layoutOf(spec);
    for (let k = 0; k < spec.T; k++) {
      let start = 0;
      for (const L of spec.levels!) {
        let sum = 0;
        for (let l = 0; l < L; l++) sum += stats[layout.levels + k * 9 + start + l];
        expect(sum).toBeCloseTo(stats[layout.count + k], 9);
        start += L;
      }
    }
  });
});

describe.each(['wasm', 'cpu'] as const)('tfjs-%s kernel vs the float64 reference, with categorical covariates', (backend) => {
  beforeAll(async () => {
    await loadKernel(backend);
  });

  it.each(variants)('statistics, log-likelihood and responsibilities agree within float32 tolerance ($name)', ({ D, levels }) => {
    const kernel = createTfjsKernel(backend, { chunkRows: 384 }); // 1000 rows: three chunks
    const spec = categoricalSpec(D, 4, levels);
    const batch = categoricalBatch(spec, 1000, 8);
    const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 5, tolerance: 0 });
    const params = paramsFor(spec, fit.state);
    const ref = referenceKernel.localStep(params, batch, { responsibilities: true });
    const prepared = kernel.prepare(batch);
    try {
      const got = kernel.localStep(params, prepared, { responsibilities: true });
      const layout = layoutOf(spec);
      expect(got.stats.length).toBe(ref.stats.length);
      // Each block relative to its scale (the levels block: counts of rows, like N_k).
      const ends = [...layout.blocks.map((b) => b.offset).slice(1), layout.length];
      layout.blocks.forEach((b, i) => {
        let err = 0;
        let scale = 0;
        for (let j = b.offset; j < ends[i]; j++) {
          err = Math.max(err, Math.abs(got.stats[j] - ref.stats[j]));
          scale = Math.max(scale, Math.abs(ref.stats[j]));
        }
        expect(err / Math.max(scale, 1), `block ${b.name}`).toBeLessThanOrEqual(1e-4);
      });
      expect(Math.abs(got.logLik - ref.logLik) / Math.abs(ref.logLik)).toBeLessThanOrEqual(1e-5);
      let resp = 0;
      for (let i = 0; i < ref.responsibilities!.length; i++) resp = Math.max(resp, Math.abs(got.responsibilities![i] - ref.responsibilities![i]));
      expect(resp).toBeLessThanOrEqual(1e-4);
      // The levels block is where the categorical statistics are, and not zero.
      expect(got.stats.subarray(layout.levels).some((v) => v > 0)).toBe(true);
    } finally {
      kernel.release(prepared);
    }
  });
});

describe('the category column kind (lib/data/csv.ts)', () => {
  const header = ['x', 'c'];
  const select = () => [{ column: 'x', kind: 'number' as const }, { column: 'c', kind: 'category' as const, levels: ['blue', 'red'] }];
  const bytes = (text: string) => new TextEncoder().encode(text);

  it('reads a known level as its index, quoted or padded too; a missing or unknown level skips the row, naming it', () => {
    const parsed = parseRows(bytes('1,red\n2, blue \n3,"red"\n4,\n5,green\n'), { file: 'd.csv', header, select: select(), firstLine: 2 });
    expect(parsed.rows).toBe(3);
    expect(Array.from(parsed.values)).toEqual([1, 1, 2, 0, 3, 1]);
    expect(parsed.skippedCount).toBe(2);
    expect(parsed.skipped[0]).toMatchObject({ line: 5, column: 'c', reason: 'missing value' });
    expect(parsed.skipped[1]).toMatchObject({ line: 6, column: 'c', value: 'green' });
    expect(parsed.skipped[1].reason).toContain('not a level of the column');
    expect(parsed.skipped[1].reason).toContain('"blue", "red"');
  });

  it('collects new levels in the order they appear when asked (the planner\'s sample)', () => {
    const columns = select();
    const parsed = parseRows(bytes('1,red\n2,green\n3,green\n4,blue\n'), { file: 'd.csv', header, select: columns, collectLevels: true });
    expect(columns[1].levels).toEqual(['blue', 'red', 'green']);
    expect(Array.from(parsed.values)).toEqual([1, 1, 2, 2, 3, 2, 4, 0]);
  });
});

describe('a known mixture of 3 categorical (4 levels each) and 2 numeric covariates', () => {
  const dir = tempDir();
  const { labels, bayes, bayesNumeric, csv } = categoricalMixture(3000, 11);
  const file = path.join(dir, 'mixture.csv');
  writeFileSync(file, csv);
  let fitted: Awaited<ReturnType<typeof fitLocal>>;

  beforeAll(async () => {
    fitted = await fitLocal({ files: [file], config: parseConfig({ ...MIXTURE_CONFIG, assignments: true }), outDir: dir, workers: 0, backend: 'wasm' });
  }, 120_000);

  it('is recovered through the local pipeline: ARI at least 0.95, three clusters with their likely levels', () => {
    const { posterior } = fitted;
    expect(posterior.rows).toBe(3000);
    expect(posterior.components).toHaveLength(3);
    expect(posterior.state.plan.xc).toEqual(['c1', 'c2', 'c3']);
    expect(posterior.state.plan.select.find((s) => s.column === 'c3')?.levels).toEqual(['1', '2', '3', '4']);
    // c1 in the regression: treatment-coded against its first level.
    expect(posterior.regressionColumns).toEqual(['x1', 'c1=b', 'c1=c', 'c1=d']);
    const assigned = readFileSync(fitted.assignmentsPath!, 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[1]));
    const ari = adjustedRandIndex(labels, assigned);
    const ceiling = adjustedRandIndex(labels, bayes);
    const numericOnly = adjustedRandIndex(labels, bayesNumeric);
    console.log(`categorical mixture: ARI ${ari.toFixed(4)} (the Bayes rule's ${ceiling.toFixed(4)}; on x1, x2, y alone ${numericOnly.toFixed(4)})`);
    expect(ari).toBeGreaterThanOrEqual(0.95);
    expect(ari).toBeGreaterThanOrEqual(ceiling - 0.01);
    expect(numericOnly).toBeLessThan(0.9); // the categories carry what the clusters need
    for (const c of posterior.components) {
      for (const column of ['c1', 'c2', 'c3']) {
        const p = Object.values(c.categories![column]);
        expect(p.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
        expect(Math.max(...p)).toBeGreaterThan(0.7); // the cluster's own level, 0.8 in truth
      }
    }
  });

  it('predict scores new rows with the fitted levels; a level the fit never saw skips the row, naming file, line, column and level', async () => {
    const unseen = path.join(dir, 'new.csv');
    writeFileSync(unseen, 'x1,x2,c1,c2,c3,y\n0.1,0.2,a,b,1,1.0\n0.1,0.2,a,purple,1,1.0\n1.5,0,b,c,3,-2\n');
    const chunks: Buffer[] = [];
    const out = new Writable({ write: (chunk, _encoding, done) => (chunks.push(Buffer.from(chunk)), done()) });
    const result = await predictFile({ posterior: { text: readFileSync(fitted.posteriorPath, 'utf8'), file: fitted.posteriorPath }, csv: unseen, out, workers: 0, backend: 'reference' });
    expect(result.rows).toBe(2);
    expect(result.skipped).toBe(1);
    expect(result.skippedExamples[0]).toMatchObject({ file: unseen, line: 3, column: 'c2', value: 'purple' });
    expect(result.skippedExamples[0].reason).toContain('not a level');
    const scored = Buffer.concat(chunks).toString().trim().split('\n');
    expect(scored[0]).toBe('x1,x2,c1,c2,c3,y,cluster,cluster_probability,prediction,prediction_sd,log_density');
    expect(scored[2]).toBe('0.1,0.2,a,purple,1,1.0,,,,,'); // no cells for the skipped row
    // The library's predict on records: the same clusters as the file's, and an unknown level is an error naming it.
    const rows = [{ x1: 0.1, x2: 0.2, c1: 'a', c2: 'b', c3: '1' }, { x1: 1.5, x2: 0, c1: 'b', c2: 'c', c3: 3 }];
    const predicted = await predictRows(fitted.posteriorPath, rows);
    expect(Array.from(predicted.cluster)).toEqual([scored[1], scored[3]].map((l) => Number(l.split(',')[6])));
    await expect(predictRows(fitted.posteriorPath, [{ x1: 0, x2: 0, c1: 'a', c2: 'purple', c3: 1 }])).rejects.toThrow(/column "c2".*"purple" is not a level/);
  });

  it('runs through the pipeline roles over in-memory ports (several binary shards, SVI then batch sweeps) to the same clusters', async () => {
    const ctx = inlinePorts(await loadKernel('wasm'));
    await ctx.store.put('datasets/mix/data/a.csv', new TextEncoder().encode(csv));
    const config = parseConfig({ ...MIXTURE_CONFIG, assignments: true, schedule: { shardRows: 500, sviEpochs: 1, shardsPerStep: 2 } });
    const manifest = await planRun(ctx, { dataset: 'mix', config }, ctx.kernel);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(4);
    expect(manifest.plan.xc).toEqual(['c1', 'c2', 'c3']);
    expect((await drive(ctx)).status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('mix', manifest.runId))).value;
    const posterior = (await readJson<PosteriorDocument & { trace: TraceEntry[] }>(ctx.store, state.resultKey!)).value;
    expect(posterior.rows).toBe(3000);
    expect(posterior.components).toHaveLength(3);
    const sweeps = posterior.trace.filter((t) => t.phase === 'batch').map((t) => t.elbo);
    for (let i = 1; i < sweeps.length; i++) expect(sweeps[i]).toBeGreaterThanOrEqual(sweeps[i - 1] - 1e-6 * Math.abs(sweeps[i]));
    // Same clusters as the local fit, up to numbering.
    const sizes = (doc: PosteriorDocument) => doc.components.map((c) => c.size).sort((a, b) => a - b);
    sizes(posterior).forEach((s, i) => expect(Math.abs(s - sizes(fitted.posterior)[i])).toBeLessThan(30));
  });
});

describe('a categorical regression column with shared coefficients (docs/model.md §15)', () => {
  it('shares every one of its treatment-coded inputs: one slope per level, the same in every cluster, reported once', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'mixture.csv');
    writeFileSync(file, categoricalMixture(3000, 11).csv);
    const config = parseConfig({ ...MIXTURE_CONFIG, sharedCoefficients: ['c1'] });
    const { posterior, posteriorPath } = await fitLocal({ files: [file], config, outDir: dir, workers: 0, backend: 'reference' });
    expect(posterior.components).toHaveLength(3);
    expect(posterior.shared?.columns).toEqual(['c1=b', 'c1=c', 'c1=d']);
    for (const j of [1, 2, 3]) for (const c of posterior.components) expect(c.coefficients[j]).toBeCloseTo(posterior.components[0].coefficients[j], 12);
    // The levels have no effect on y in truth: the shared slopes are near 0.
    for (const b of posterior.shared!.coefficients) expect(Math.abs(b)).toBeLessThan(0.15);
    const predicted = await predictRows(posteriorPath, [{ x1: 0.1, x2: 0.2, c1: 'a', c2: 'b', c3: 1 }]);
    expect(predicted.rows).toBe(1);
  });
});

describe('levels the planner\'s sample did not see', () => {
  it('skip their rows in the fit, each reported with file, line, column and level; a column only in the regression is treatment-coded', async () => {
    const dir = tempDir();
    const lines = categoricalMixture(4000, 12).csv.trim().split('\n');
    // One row gets a level of c2 no other row has, beyond the first 64 KiB the planner reads whole and
    // between the 32 windows of a few rows, 125 rows apart, that make the 100-row sample.
    const line = 3950;
    const fields = lines[line - 1].split(',');
    fields[3] = 'zz';
    lines[line - 1] = fields.join(',');
    const file = path.join(dir, 'rare.csv');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const config = parseConfig({ target: 'y', columns: ['x1', 'x2', 'c1'], regressionColumns: ['x1', 'c2'], components: 6, schedule: { sampleRows: 100 } });
    const { posterior } = await fitLocal({ files: [file], config, outDir: dir, workers: 0, backend: 'reference' });
    expect(posterior.state.plan.xc).toEqual(['c1']);
    expect(posterior.regressionColumns).toEqual(['x1', 'c2=b', 'c2=c', 'c2=d']);
    expect(posterior.state.plan.select.find((s) => s.column === 'c2')?.levels).toEqual(['a', 'b', 'c', 'd']);
    expect(posterior.rows).toBe(3999);
    expect(posterior.skippedRows).toBe(1);
    expect(posterior.skipped[0]).toMatchObject({ file, line, column: 'c2', value: 'zz' });
    expect((posterior.skipped[0] as { reason: string }).reason).toContain('not a level of the column in the planner\'s sample (4 levels: "a", "b", "c", "d")');
  });
});

describe('initialization on categorical covariates alone', () => {
  it('finds the three groups from the levels when there is no numeric covariate', () => {
    const spec = categoricalSpec(0, 2, [4, 4, 4], { components: 6 });
    const batch = categoricalBatch(spec, 1500, 9);
    const result = initialize(spec, batch, referenceKernel, { restarts: 3, seed: 1 });
    const counts = derive(spec, result.state).count;
    const big = Array.from(counts).filter((n) => n > 100);
    expect(big.length).toBe(3);
  });
});
