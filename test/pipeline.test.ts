/** The roles over in-memory ports: SVI then batch sweeps, every row counted once, warm starts. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/config.js';
import { planRun } from '../lib/pipeline/planner.js';
import { stepSize } from '../lib/inference/vb.js';
import { handleUpdates } from '../lib/pipeline/aggregator.js';
import { keys, parseMessage, UpdateMessage } from '../lib/pipeline/protocol.js';
import { handleTaskDelivery } from '../lib/pipeline/worker.js';
import { readJson, type Manifest, type RunState } from '../lib/pipeline/run.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { drive, inlinePorts } from './support/inline-pipeline.js';

const forum = readFileSync('examples/forum.csv');

describe('pipeline roles over in-memory ports', () => {
  it('runs SVI over many shards, then batch sweeps to convergence, counting every row once', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    const config = parseConfig({ target: 'y', components: 8, schedule: { shardRows: 40, sviEpochs: 2 } });
    const manifest = await planRun(ctx, { dataset: 'forum', config }, ctx.kernel);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(20);
    const progress = await drive(ctx);
    expect(progress.status).toBe('done');
    const state = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
    expect(state.trace.filter((t) => t.phase === 'svi').length).toBeGreaterThan(10);
    expect(state.converged).toBe(true);
    // Batch sweeps never lower the ELBO.
    const sweeps = state.trace.filter((t) => t.phase === 'batch').map((t) => t.elbo);
    for (let i = 1; i < sweeps.length; i++) expect(sweeps[i]).toBeGreaterThanOrEqual(sweeps[i - 1] - 1e-6 * Math.abs(sweeps[i]));
    const posterior = (await readJson<PosteriorDocument>(ctx.store, state.resultKey!)).value;
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
    expect(state.trace.filter((t) => t.phase === 'batch').length).toBeLessThanOrEqual(3);
    // A different model is not warm-started.
    const other = await planRun(ctx, { dataset: 'forum', config: parseConfig({ target: 'y', components: 6 }) }, ctx.kernel);
    expect(other.warmStartFrom).toBeUndefined();
    const m = (await readJson<Manifest>(ctx.store, keys.manifest('forum', other.runId))).value;
    expect(m.sample.restartElbos.length).toBe(config.schedule.restarts);
  });
});

describe('stale SVI results', () => {
  it('damps the step size of results computed against old posterior versions', async () => {
    const ctx = inlinePorts();
    await ctx.store.put('datasets/forum/data/a.csv', forum);
    // 12 tasks in flight, one result per step: results arrive up to ~11 versions late.
    const config = parseConfig({ target: 'y', components: 6, schedule: { shardRows: 40, sviEpochs: 1, shardsPerStep: 1 } });
    const manifest = await planRun(ctx, { dataset: 'forum', config, inFlight: 12 }, ctx.kernel);
    // A slow worker: the first task's result is held back while 15 others are applied.
    const [slow] = await ctx.tasks.receive(1, 0);
    for (let applied = 0; applied < 15; ) {
      const [task] = await ctx.tasks.receive(1, 0);
      await handleTaskDelivery(ctx, task, 3);
      await ctx.tasks.delete(task);
      const updates = await ctx.updates.receive(10, 0);
      await handleUpdates(ctx, updates.map((m) => parseMessage(UpdateMessage, m.body, 'updates')));
      for (const m of updates) await ctx.updates.delete(m);
      applied += updates.length;
    }
    await handleTaskDelivery(ctx, slow, 3);
    await ctx.tasks.delete(slow);
    await drive(ctx);
    const state = (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
    const steps = state.trace.filter((t) => t.phase === 'svi');
    expect(steps.length).toBe(manifest.shards.length);
    const expected = 12; // ⌈inFlight / shardsPerStep⌉
    steps.forEach((t, i) => {
      const rhoT = stepSize(i, config.schedule.delay, config.schedule.forgettingRate);
      expect(t.rho).toBeCloseTo(rhoT * Math.min(1, (expected + 1) / (t.staleness! + 1)), 12);
    });
    const late = steps.find((t) => t.staleness! > expected)!;
    expect(late.staleness).toBeGreaterThanOrEqual(15);
    expect(late.rho).toBeLessThan(stepSize(steps.indexOf(late), config.schedule.delay, config.schedule.forgettingRate));
    expect(state.status).toBe('done');
  });
});
