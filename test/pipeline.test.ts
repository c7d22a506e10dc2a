/** The roles over in-memory ports: SVI then batch sweeps, every row counted once, warm starts. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/config.js';
import { planRun } from '../lib/pipeline/planner.js';
import { batchUpdate, paramsFor, runLocalStep, stepSize } from '../lib/inference/vb.js';
import { readOwnedLines } from '../lib/data/csv.js';
import { parseWith, toBatch } from '../lib/data/dataset.js';
import { layoutOf, priorCoordinates } from '../lib/model/spec.js';
import { derive } from '../lib/model/posterior.js';
import { reportedComponents } from '../lib/model/summary.js';
import { handleUpdates, inThreadReport } from '../lib/pipeline/aggregator.js';
import { keys, parseMessage, RoundCompleteMessage, TaskMessage, UpdateMessage } from '../lib/pipeline/protocol.js';
import { csvShardCodec, handleTaskDelivery, parseAhead, runTask, withClusteringColumns, WorkerCache, type ShardRows } from '../lib/pipeline/worker.js';
import { createRandom } from '../lib/math/random.js';
import { encodePosterior, readJson, readPosterior, specOf, type Log, type Manifest, type ReportPort, type RunState, type ShardPlan, type TraceEntry } from '../lib/pipeline/run.js';
import type { ReportFigures } from '../lib/model/report.js';
import type { Kernel } from '../lib/kernel/types.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { drive, driveRedelivering, inlinePorts } from './support/inline-pipeline.js';
import { SHARED_TRUTH, sharedCsv } from './support/shared-data.js';

const forum = readFileSync('examples/forum.csv');

describe('pipeline roles over in-memory ports', () => {
  it('runs SVI over many shards, then batch sweeps to convergence, counting every row once', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 8, schedule: { shardRows: 40, sviEpochs: 2, shardsPerStep: 2 } });
    const manifest = await planRun(ctx, { dataset: 'forum', config }, ctx.kernel);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(20);
    const progress = await drive(ctx);
    expect(progress.status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
    expect(state.converged).toBe(true);
    const posterior = (await readJson<PosteriorDocument & { trace: TraceEntry[] }>(ctx.store, state.resultKey!)).value;
    // 2 epochs of ⌈25 / 2⌉ steps, each with the step size of its place in the schedule.
    const steps = posterior.trace.filter((t) => t.phase === 'svi');
    expect(steps.length).toBe(2 * Math.ceil(manifest.shards.length / 2));
    steps.forEach((t, i) => expect(t.rho).toBe(stepSize(i, config.schedule.delay, config.schedule.forgettingRate)));
    // Batch sweeps never lower the ELBO.
    const sweeps = posterior.trace.filter((t) => t.phase === 'batch').map((t) => t.elbo);
    for (let i = 1; i < sweeps.length; i++) expect(sweeps[i]).toBeGreaterThanOrEqual(sweeps[i - 1] - 1e-6 * Math.abs(sweeps[i]));
    expect(posterior.rows).toBe(1000);
    expect(posterior.components.length).toBe(4);
    const latest = (await readJson<{ posterior: string }>(ctx.store, keys.latestModel('forum'))).value;
    expect(latest.posterior).toBe(state.resultKey);
  });

  it('fails the run, naming the file, when a data object changes under it', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const manifest = await planRun(ctx, { dataset: 'forum', config: parseConfig({ target: 'y', components: 6 }) }, ctx.kernel);
    await ctx.store.put('datasets/forum/data/a.csv', forum.subarray(0, forum.length / 2)); // a new upload
    const [task] = await ctx.tasks.receive(1, 0);
    const lastDelivery = { ...task, receiveCount: 3 };
    await expect(handleTaskDelivery(ctx, lastDelivery, 3)).rejects.toThrow(
      'datasets/forum/data/a.csv: changed since the run was planned',
    );
    const updates = await ctx.updates.receive(10, 0);
    await handleUpdates(ctx, updates.map((m) => parseMessage(UpdateMessage, m.body, 'updates')));
    const state = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
    expect(state.status).toBe('failed');
    expect(state.failure).toContain('changed since the run was planned');
  });

  it('a worker told the shards while the run is planned parses them ahead, and its tasks use those rows', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const ahead = new WorkerCache();
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 200 } });
    const planning = { ...ctx, onShardsPlanned: (planned: ShardPlan) => ahead.prefetch(ctx, planned, planned.shards.map((s) => s.index)) };
    const manifest = await planRun(planning, { dataset: 'forum', config }, ctx.kernel);
    expect(manifest.shards.length).toBeGreaterThan(1);
    const [message] = await ctx.tasks.receive(1, 0);
    const task = parseMessage(TaskMessage, message.body, 'tasks');
    const readItself = await runTask(ctx, task, new WorkerCache());
    // A new upload replaces the object: reading the shard now fails, so only rows parsed ahead answer.
    await ctx.store.put('datasets/forum/data/a.csv', forum.subarray(0, forum.length / 2));
    await expect(runTask(ctx, task, new WorkerCache())).rejects.toThrow('changed since the run was planned');
    expect(await runTask(ctx, task, ahead)).toEqual(readItself);
  });

  it('shards parsed in another thread are used once done; one not done yet is parsed here, with the same result', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 200 } });
    let planned: ShardPlan | undefined;
    const manifest = await planRun({ ...ctx, onShardsPlanned: (p: ShardPlan) => (planned = p) }, { dataset: 'forum', config }, ctx.kernel);
    const [message] = await ctx.tasks.receive(1, 0);
    const task = parseMessage(TaskMessage, message.body, 'tasks');
    const readItself = await runTask(ctx, task, new WorkerCache());
    let asked = 0;
    const elsewhere = (index: number) => (asked++, parseAhead(ctx, planned!, index));
    const done = new WorkerCache();
    done.prefetch(ctx, planned!, [task.shard], elsewhere);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const never = new WorkerCache();
    never.prefetch(ctx, planned!, [task.shard], () => new Promise<never>(() => {}));
    expect(asked).toBe(1);
    // The object replaced: only rows parsed ahead answer; the cache whose parse never ends reads it itself and fails.
    await ctx.store.put('datasets/forum/data/a.csv', forum.subarray(0, forum.length / 2));
    expect(await runTask(ctx, task, done)).toEqual(readItself);
    await expect(runTask(ctx, task, never)).rejects.toThrow('changed since the run was planned');
    expect(manifest.shards.length).toBeGreaterThan(1);
  });

  it("warms the report up on a run's planning message; a warm-up that fails is logged, and the delivery still succeeds", async () => {
    const warned: string[] = [];
    let warmUps = 0;
    const ctx = {
      ...inlinePorts(),
      log: { info() {}, error() {}, warn: (message: string) => void warned.push(message) },
      report: { ...inThreadReport, warm: async () => void (warmUps += 1) },
    };
    const planning = { kind: 'planning' as const, dataset: 'forum', runId: 'run' };
    expect(await handleUpdates(ctx, [planning])).toEqual([]);
    expect([warmUps, warned]).toEqual([1, []]);
    ctx.report.warm = async () => {
      throw new Error('out of memory');
    };
    expect(await handleUpdates(ctx, [planning])).toEqual([]);
    expect(warned).toEqual(['report warm-up failed']);
  });

  it("renders each new version's report figures while its sweep runs, and the report at the end reuses the final version's: the page is the one rendered at once", async () => {
    // Run ids differ: the roles cache what is immutable per run (its manifest, its report sample) by id.
    let fits = 0;
    const fit = async (report: ReportPort, log?: Log) => {
      const ctx = Object.assign(inlinePorts(), { report }, log ? { log } : {});
      await ctx.store.put('datasets/forum/data/a.csv', forum);
      // Initialized on a small sample, the fit takes a few sweeps: a few versions have figures rendered ahead.
      const config = parseConfig({ target: 'y', components: 8, schedule: { shardRows: 100, sampleRows: 100 } });
      const manifest = await planRun(ctx, { dataset: 'forum', config, runId: `ahead-${(fits += 1)}`, now: new Date(0) }, ctx.kernel);
      expect((await drive(ctx)).status).toBe('done');
      // The page names its run: the same name for each, to compare the rest.
      return Buffer.from((await ctx.store.get(keys.result('forum', manifest.runId, 'report.html'))).body).toString('utf8').replaceAll(manifest.runId, 'RUN');
    };
    // Which posterior's components each set of figures was rendered from, and which the page's are.
    const renderedFrom = new Map<ReportFigures, string>();
    const reused: { from?: string; final: string }[] = [];
    const counting: ReportPort = {
      ...inThreadReport,
      async figures(...args) {
        const figures = await inThreadReport.figures!(...args);
        renderedFrom.set(figures, JSON.stringify(args[0].components));
        return figures;
      },
      render: (...args) => {
        if (args[4]) reused.push({ from: renderedFrom.get(args[4]), final: JSON.stringify(args[0].components) });
        return inThreadReport.render(...args);
      },
    };
    const ahead = await fit(counting);
    // Every batch version after the first sweep (which counts the rows the figures show); the end reuses the final one's.
    expect(renderedFrom.size).toBeGreaterThanOrEqual(2);
    expect(reused).toHaveLength(1);
    expect(reused[0].from).toBe(reused[0].final);
    const atOnce = await fit({ warm: inThreadReport.warm, render: inThreadReport.render });
    expect(ahead).toBe(atOnce);
    // A render ahead that fails is logged; the report at the end renders it all.
    const warned: string[] = [];
    const failing: ReportPort = { ...inThreadReport, figures: async () => Promise.reject(new Error('out of memory')) };
    expect(await fit(failing, { info() {}, error() {}, warn: (message: string) => void warned.push(message) })).toBe(atOnce);
    expect(warned.length).toBeGreaterThan(0);
    expect(new Set(warned)).toEqual(new Set(['report figures ahead failed']));
  });

  it('announced shards are stored by idle workers while the planner initializes: the first round reads no CSV, and the fit is the same; the workers are woken before the sample', async () => {
    const fit = async (announceShards: boolean) => {
      const ctx = inlinePorts();
      await ctx.store.put('datasets/forum/data/a.csv', forum);
      let csvReads = 0;
      const getRange = ctx.store.getRange.bind(ctx.store);
      ctx.store.getRange = (key, start, end, options) => ((csvReads += key.endsWith('.csv') ? 1 : 0), getRange(key, start, end, options));
      const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 200 } });
      const request = { dataset: 'forum', config, runId: 'run', now: new Date('2026-01-01T00:00:00Z'), workers: 4 };
      const manifest = await planRun({ ...ctx, announceShards, wakeWorkers: announceShards }, request, ctx.kernel);
      // With the shards the planner announces itself to the aggregator (a planning message); drive() applies it as nothing.
      const updatesBeforeTasks = await ctx.updates.depth();
      // The prefetch messages come first; another container (cache) takes them.
      const prefetcher = new WorkerCache();
      const messages = await ctx.tasks.receive(100, 0);
      const kinds = messages.map((m) => (JSON.parse(m.body) as { kind: string }).kind);
      const prefetches = messages.filter((_, i) => kinds[i] === 'prefetch');
      const wakes = messages.filter((_, i) => kinds[i] === 'wake');
      // A wake only starts a container: it writes nothing and reports nothing.
      const puts = ctx.store.put.bind(ctx.store);
      let written = 0;
      ctx.store.put = (...args) => ((written += 1), puts(...args));
      const depth = await ctx.updates.depth();
      for (const m of wakes) await handleTaskDelivery(ctx, m, 3, prefetcher);
      expect([written, await ctx.updates.depth()]).toEqual([0, depth]);
      ctx.store.put = puts;
      for (const m of prefetches) await handleTaskDelivery(ctx, m, 3, prefetcher);
      for (const m of messages) await (prefetches.includes(m) || wakes.includes(m) ? ctx.tasks.delete(m) : ctx.tasks.release(m));
      csvReads = 0;
      const progress = await drive(ctx);
      expect(progress.status).toBe('done');
      const state = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
      const doc = (await readJson<PosteriorDocument>(ctx.store, state.resultKey!)).value;
      return { manifest, prefetches: prefetches.length, wakes: wakes.length, firstKind: kinds[0], csvReads, doc, updatesBeforeTasks };
    };
    const announced = await fit(true);
    const plain = await fit(false);
    expect(announced.manifest.prefetched).toBe(true);
    expect(announced.manifest.shards.length).toBeGreaterThan(2);
    // One message per worker, SHARDS_PER_WORKER shards each, covering every shard here.
    expect(announced.prefetches).toBe(Math.ceil(announced.manifest.shards.length / 2));
    expect(announced.csvReads).toBe(0);
    // One wake per worker the first round uses (4 workers, more shards), sent first.
    expect(announced.wakes).toBe(Math.min(4, announced.manifest.shards.length));
    expect(announced.firstKind).toBe('wake');
    expect(plain.wakes).toBe(0);
    expect(announced.updatesBeforeTasks).toBe(1);
    expect(plain.updatesBeforeTasks).toBe(0);
    expect(plain.prefetches).toBe(0);
    expect(plain.csvReads).toBeGreaterThanOrEqual(plain.manifest.shards.length);
    expect(announced.doc.elbo).toBe(plain.doc.elbo);
    expect(announced.doc.components).toEqual(plain.doc.components);
  });

  it('a cold container\'s kernel may still be loading: the planner wakes the workers, samples and announces the shards, a worker stores its shards, and only initializing and a task wait for it', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    let load!: (kernel: Kernel) => void;
    const loading = new Promise<Kernel>((resolve) => (load = resolve));
    const phases: string[] = [];
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 200 } });
    const planning = planRun(
      { ...ctx, announceShards: true, wakeWorkers: true, onPhase: (p) => void phases.push(`${p.phase} ${p.done}`) },
      { dataset: 'forum', config, runId: 'loading', workers: 4 },
      loading,
    );
    let settled = false;
    void planning.finally(() => (settled = true));
    for (let i = 0; i < 1000 && !phases.includes('initialize 0'); i++) await new Promise((r) => setImmediate(r));
    expect(phases).toContain('initialize 0');
    const messages = await ctx.tasks.receive(100, 0);
    const kinds = messages.map((m) => (JSON.parse(m.body) as { kind: string }).kind);
    expect(new Set(kinds)).toEqual(new Set(['wake', 'prefetch']));
    // A worker whose kernel never loads still stores the announced shards.
    const never = new Promise<Kernel>(() => {});
    for (const m of messages) await handleTaskDelivery({ ...ctx, kernel: never }, m, 3, new WorkerCache());
    const copies = await ctx.store.list(keys.shardRows('forum', 'loading', 0).replace(/s\d+\.bin$/, ''));
    expect(copies.length).toBeGreaterThan(2);
    expect(settled).toBe(false);
    load(ctx.kernel);
    const manifest = await planning;
    expect(copies.length).toBe(manifest.shards.length);
    // A task waits for the kernel, then runs.
    const [task] = (await ctx.tasks.receive(10, 0)).filter((m) => (JSON.parse(m.body) as { kind: string }).kind === 'task');
    await handleTaskDelivery({ ...ctx, kernel: Promise.resolve(ctx.kernel) }, task, 3, new WorkerCache());
    const { round, index } = JSON.parse(task.body) as TaskMessage;
    expect((await ctx.store.list(keys.partialPrefix('forum', 'loading', round.id, Math.floor(index / round.fanIn)))).length).toBeGreaterThan(0);
  });

  it('a kernel that fails to load fails planning with its reason when initializing needs it', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 6 });
    await expect(planRun(ctx, { dataset: 'forum', config }, Promise.reject(new Error('no wasm binary here')))).rejects.toThrow('no wasm binary here');
  });

  it('a binary copy stored before the relevant covariates were chosen is read with the manifest\'s columns', () => {
    const rows: ShardRows = {
      counts: { rows: 2, skipped: 0, lines: 2, skippedExamples: [] },
      batch: { n: 2, x: Float32Array.of(1, 2, 3, 4, 5, 6), u: Float32Array.of(1, 2, 3, 1, 4, 5, 6, 1), y: Float32Array.of(7, 8) },
      xColumns: ['a', 'b', 'c'],
    };
    const copy = csvShardCodec.decode(csvShardCodec.encode(rows), 'copy');
    expect(copy.xColumns).toEqual(['a', 'b', 'c']);
    const narrowed = withClusteringColumns(copy, ['a', 'c']);
    expect([...narrowed.batch.x]).toEqual([1, 3, 4, 6]);
    expect([...narrowed.batch.u]).toEqual([...rows.batch.u]);
    expect(withClusteringColumns(copy, ['a', 'b', 'c'])).toBe(copy);
    expect(() => withClusteringColumns(copy, ['d'])).toThrow('holds clustering columns a, b, c, not d');
  });

  it('warm-starts a refit from the dataset\'s last model when the columns and model match', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 8 });
    const first = await planRun(ctx, { dataset: 'forum', config }, ctx.kernel);
    await drive(ctx);
    const second = await planRun(ctx, { dataset: 'forum', config }, ctx.kernel);
    expect(second.warmStartFrom).toBe(first.runId);
    expect(second.standardization).toEqual(first.standardization);
    const progress = await drive(ctx);
    expect(progress.status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('forum', second.runId))).value;
    const doc = (await readJson<{ trace: TraceEntry[] }>(ctx.store, state.resultKey!)).value;
    expect(doc.trace.filter((t) => t.phase === 'batch').length).toBeLessThanOrEqual(3);
    // A different model is not warm-started.
    const other = await planRun(ctx, { dataset: 'forum', config: parseConfig({ target: 'y', components: 6 }) }, ctx.kernel);
    expect(other.warmStartFrom).toBeUndefined();
    const m = (await readJson<Manifest>(ctx.store, keys.manifest('forum', other.runId))).value;
    expect(m.sample.restartElbos.length).toBe(config.schedule.restarts);
  });
});

describe('shared coefficients through the rounds (docs/model.md §15)', () => {
  for (const family of ['gaussian', 'bernoulli', 'poisson'] as const) {
    it(`${family}: SVI steps then batch sweeps on the tied posterior; the sweeps never lower the ELBO, the shared slopes come back once`, async () => {
      const ctx = inlinePorts();
      await ctx.store.put('datasets/shared/data/a.csv', new TextEncoder().encode(sharedCsv(8000, family, 31)));
      const config = parseConfig({
        target: 'y', family, components: 8, sharedCoefficients: ['x1', 'x2'],
        schedule: { shardRows: 1000, sviEpochs: 1, shardsPerStep: 2, tolerance: 1e-7 },
      });
      const manifest = await planRun(ctx, { dataset: 'shared', config }, ctx.kernel);
      expect((await drive(ctx)).status).toBe('done');
      const state = (await readJson<RunState>(ctx.store, keys.state('shared', manifest.runId))).value;
      expect(state.converged).toBe(true);
      const posterior = (await readJson<PosteriorDocument & { trace: TraceEntry[] }>(ctx.store, state.resultKey!)).value;
      expect(posterior.trace.filter((t) => t.phase === 'svi').length).toBeGreaterThan(0);
      const sweeps = posterior.trace.filter((t) => t.phase === 'batch').map((t) => t.elbo);
      for (let i = 1; i < sweeps.length; i++) expect(sweeps[i]).toBeGreaterThanOrEqual(sweeps[i - 1] - 1e-6 * Math.abs(sweeps[i]));
      expect(posterior.components.filter((c) => c.weight > 0.05)).toHaveLength(4);
      expect(posterior.shared?.columns).toEqual(['x1', 'x2']);
      // Each component keeps its whole regression (docs/library.md): a shared column's entry is the shared slope.
      for (const c of posterior.components)
        c.coefficients.forEach((b, j) => {
          expect(b).toBeCloseTo(posterior.shared!.coefficients[j], 12);
          expect(c.coefficientSd[j]).toBeCloseTo(posterior.shared!.coefficientSd[j], 12);
        });
      posterior.shared!.coefficients.forEach((b, j) =>
        expect(Math.abs(b - SHARED_TRUTH[family].slopes[j])).toBeLessThan(Math.max(0.05, 3 * posterior.shared!.coefficientSd[j])),
      );
    });
  }
});

describe('merge and delete moves through the rounds', () => {
  it('a component split in two is merged back by a candidate sweep; repeated completions change nothing; the trace never falls', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 200, sviEpochs: 0 } });
    const manifest = await planRun(ctx, { dataset: 'forum', config, warmStart: false }, ctx.kernel);
    const spec = specOf(manifest);
    // Start from the initialization with its largest cluster's statistics halved over it and an
    // empty slot: two identical components, a fixed point of batch VB that only a merge undoes.
    const stateKey = keys.state('forum', manifest.runId);
    const start = (await readJson<RunState>(ctx.store, stateKey)).value;
    const initial = await readPosterior(ctx.store, spec, start.posteriorKey);
    const layout = layoutOf(spec);
    const lambda0 = priorCoordinates(spec);
    const stats = initial.state.lambda.map((v, i) => v - lambda0[i]);
    const empty = Array.from({ length: spec.T }, (_, k) => k).find((k) => stats[layout.count + k] < 1e-3)!;
    const { D, P } = spec;
    for (const [offset, width] of [[layout.count, 1], [layout.sx, D], [layout.sxx, D * D], [layout.suu, P * P], [layout.syu, P], [layout.syy, 1]])
      for (let i = 0; i < width; i++) {
        stats[offset + i] /= 2;
        stats[offset + empty * width + i] = stats[offset + i];
      }
    const split = batchUpdate(spec, initial.state, stats);
    expect(reportedComponents(derive(spec, split))).toHaveLength(5);
    await ctx.store.put(start.posteriorKey, encodePosterior(spec, { version: 0, state: split, trace: [] }));

    let candidates = 0;
    await driveRedelivering(ctx, stateKey, (after) => {
      if (after.moves?.candidate) candidates++;
    });
    const state = (await readJson<RunState>(ctx.store, stateKey)).value;
    expect(state.status).toBe('done');
    expect(state.converged).toBe(true);
    expect(candidates).toBeGreaterThan(0);
    const posterior = (await readJson<PosteriorDocument & { trace: TraceEntry[] }>(ctx.store, state.resultKey!)).value;
    expect(posterior.components.length).toBe(4);
    const sweeps = posterior.trace.filter((t) => t.phase === 'batch').map((t) => t.elbo);
    for (let i = 1; i < sweeps.length; i++) expect(sweeps[i]).toBeGreaterThanOrEqual(sweeps[i - 1] - 1e-6 * Math.abs(sweeps[i]));
  });
});

describe('a rejected move through the rounds', () => {
  it('a small true cluster is proposed for deletion, the candidate sweep is rejected and left out of the trace, and the cluster stays', async () => {
    // The forum's four clusters and a fifth of 15 rows (1.5%, below the 5% that deletes consider).
    const random = createRandom(4);
    const extra = Array.from({ length: 15 }, () => {
      const [x1, x2] = [4 + 0.1 * random.normal(), 4 + 0.1 * random.normal()];
      return [x1, x2, 5 + 2 * x1 - x2 + 0.05 * random.normal()].map((v) => v.toFixed(5)).join(',');
    });
    const ctx = inlinePorts();
    await ctx.store.put('datasets/small/data/a.csv', Buffer.concat([forum, Buffer.from(extra.join('\n') + '\n')]));
    const config = parseConfig({ target: 'y', components: 8, schedule: { shardRows: 300, sviEpochs: 0 } });
    const manifest = await planRun(ctx, { dataset: 'small', config }, ctx.kernel);
    const stateKey = keys.state('small', manifest.runId);
    let rejected = 0;
    let rounds = 0;
    await driveRedelivering(ctx, stateKey, (after, completions) => {
      rounds += completions;
      rejected = Math.max(rejected, after.moves?.exclude.length ?? 0);
    });
    const state = (await readJson<RunState>(ctx.store, stateKey)).value;
    expect(state.status).toBe('done');
    expect(rejected).toBeGreaterThan(0);
    expect(state.converged).toBe(true);
    const posterior = (await readJson<PosteriorDocument & { trace: TraceEntry[] }>(ctx.store, state.resultKey!)).value;
    expect(posterior.components.length).toBe(5);
    expect(Math.min(...posterior.components.map((c) => c.size))).toBeCloseTo(15, 0);
    // Every completed round was a sweep; the rejected candidates' sweeps are not in the trace.
    const sweeps = posterior.trace.filter((t) => t.phase === 'batch');
    expect(sweeps.length).toBe(rounds - rejected);
    for (let i = 1; i < sweeps.length; i++) expect(sweeps[i].elbo).toBeGreaterThanOrEqual(sweeps[i - 1].elbo - 1e-6 * Math.abs(sweeps[i].elbo));
  });
});

describe('rounds and their reduce', () => {
  /** Run the planned run's tasks in the order `pick` chooses, one at a time, until it ends. */
  async function runInOrder(ctx: ReturnType<typeof inlinePorts>, pick: (n: number) => number) {
    const cache = new WorkerCache();
    for (;;) {
      const pending = await ctx.tasks.receive(10, 0);
      for (let left = [...pending]; left.length; ) {
        const [task] = left.splice(pick(left.length), 1);
        await handleTaskDelivery(ctx, task, 3, cache);
        await ctx.tasks.delete(task);
      }
      const updates = await ctx.updates.receive(10, 0);
      if (updates.length) await handleUpdates(ctx, updates.map((m) => parseMessage(UpdateMessage, m.body, 'updates')));
      for (const m of updates) await ctx.updates.delete(m);
      if (ctx.progress && ctx.progress.status !== 'running') return ctx.progress;
      if (!pending.length && !updates.length) throw new Error('stalled');
    }
  }

  it('gives the same posterior, to the bit, whatever order the tasks finish in', async () => {
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 40, shardsPerStep: 7 } });
    const results = [];
    for (const pick of [() => 0, (n: number) => n - 1, (n: number) => Math.floor(n / 2)]) {
      const ctx = inlinePorts();
      await ctx.store.put('datasets/forum/data/a.csv', forum);
      const manifest = await planRun(ctx, { dataset: 'forum', config, runId: 'fixed' }, ctx.kernel);
      expect((await runInOrder(ctx, pick)).status).toBe('done');
      const state = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
      results.push((await readJson<PosteriorDocument>(ctx.store, state.resultKey!)).value.state.lambda);
    }
    expect(results[1]).toBe(results[0]);
    expect(results[2]).toBe(results[0]);
  });

  it('reduces a round to the sum of its shards\' local steps, and a repeated or stale completion changes nothing', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 40, sviEpochs: 0 } });
    const manifest = await planRun(ctx, { dataset: 'forum', config }, ctx.kernel);
    const spec = specOf(manifest);
    const tasks = await ctx.tasks.receive(10, 0);
    for (let more = tasks; more.length; more = await ctx.tasks.receive(10, 0)) if (more !== tasks) tasks.push(...more);
    expect(tasks.length).toBe(manifest.shards.length);
    for (const task of tasks) await handleTaskDelivery(ctx, task, 3);
    // Every shard completed: exactly one completion message (the round's id deduplicates a second).
    const completions = await ctx.updates.receive(10, 0);
    expect(completions.length).toBe(1);
    const before = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
    // The sweep's total equals the local steps of the shards, summed directly.
    const version0 = await readPosterior(ctx.store, spec, before.posteriorKey);
    const params = paramsFor(spec, version0.state);
    const expected = new Float64Array(layoutOf(spec).length);
    let expectedRows = 0;
    for (const shard of manifest.shards) {
      const bytes = await readOwnedLines(ctx.store, manifest.files[0].key, shard.start, shard.end, manifest.files[0].dataStart);
      const parsed = parseWith(manifest.plan, manifest.files[0], bytes);
      const batch = toBatch(manifest.plan, manifest.standardization, parsed);
      const rounded = { n: batch.n, x: Float64Array.from(Float32Array.from(batch.x)), u: Float64Array.from(Float32Array.from(batch.u)), y: Float64Array.from(Float32Array.from(batch.y)) };
      const result = runLocalStep(ctx.kernel, params, ctx.kernel.prepare(rounded));
      for (let i = 0; i < expected.length; i++) expected[i] += result.stats[i];
      expectedRows += parsed.rows;
    }
    const message = parseMessage(RoundCompleteMessage, completions[0].body, 'updates');
    await handleUpdates(ctx, [message]);
    const after = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
    expect(after.version).toBe(1);
    expect(after.totalRows).toBe(expectedRows);
    const version1 = await readPosterior(ctx.store, spec, after.posteriorKey);
    const lambda0 = batchUpdate(spec, version0.state, expected).lambda;
    version1.state.lambda.forEach((v, i) => expect(v).toBeCloseTo(lambda0[i], 8));
    // The same completion again, and one of an unknown round: the state is untouched.
    await handleUpdates(ctx, [message, { ...message, roundId: 'batch0-o0-v0-someone' }]);
    expect((await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value).toEqual(after);
  });
});
