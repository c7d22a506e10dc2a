/** Starting runs: coalescing uploads into one pending refit, releasing, abandoned runs. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { handleUpdates } from '../lib/pipeline/aggregator.js';
import { configuredDatasets, datasetOfDataKey, PLANNING_TIMEOUT_MS, releaseDataset, requestRefit, type ActiveRun } from '../lib/pipeline/ingest.js';
import { keys, parseMessage, TasksQueueMessage, UpdateMessage } from '../lib/pipeline/protocol.js';
import { readJson, type RunState } from '../lib/pipeline/run.js';
import { handleTaskDelivery } from '../lib/pipeline/worker.js';
import { drive, inlinePorts } from './support/inline-pipeline.js';

async function withDataset() {
  const ctx = inlinePorts();
  await ctx.store.put('datasets/forum/data/a.csv', readFileSync('examples/forum.csv'));
  await ctx.store.put('datasets/forum/model.json', JSON.stringify({ target: 'y', components: 6 }));
  return ctx;
}

describe('ingest', () => {
  it('recognizes data keys only under datasets/<name>/data/', () => {
    expect(datasetOfDataKey('datasets/sales/data/2026/part-1.csv')).toBe('sales');
    expect(datasetOfDataKey('datasets/sales/other/part-1.csv')).toBeUndefined();
    expect(datasetOfDataKey('datasets/sales/data/notes.txt')).toBeUndefined();
    // Names that would step out of their prefix, or are not one path segment, are no datasets.
    expect(datasetOfDataKey('datasets/../data/x.csv')).toBeUndefined();
    expect(datasetOfDataKey('datasets/./data/x.csv')).toBeUndefined();
    expect(datasetOfDataKey('datasets/a b/data/x.csv')).toBeUndefined();
  });

  it('refuses a refit of a name that is not a dataset name, and the schedule skips such folders', async () => {
    const ctx = await withDataset();
    for (const name of ['..', '.', 'a/b', 'a b', '']) await expect(requestRefit(ctx, name, ctx.kernel)).rejects.toThrow('is not a dataset name');
    await ctx.store.put('datasets/a b/model.json', JSON.stringify({ target: 'y' }));
    expect(await configuredDatasets(ctx)).toEqual(['forum']);
  });

  it('a pending refit survives an aggregator that crashed between ending the run and releasing the dataset', async () => {
    const ctx = await withDataset();
    const runId = ((await requestRefit(ctx, 'forum', ctx.kernel)) as { started: string }).started;
    await requestRefit(ctx, 'forum', ctx.kernel); // coalesced: a refit is pending
    // The aggregator's first attempt at the release dies (the process is gone after the state write).
    const put = ctx.store.put.bind(ctx.store);
    let crashed = false;
    ctx.store.put = async (key, body, options) => {
      if (key === keys.activeRun('forum') && !crashed) {
        crashed = true;
        throw new Error('the aggregator died');
      }
      return put(key, body, options);
    };
    // Run the roles until the aggregator dies; keep the update it was handling (not deleted, so SQS delivers it again).
    let lost: UpdateMessage[] | undefined;
    while (!lost) {
      const [task] = await ctx.tasks.receive(1, 0);
      if (task) {
        await handleTaskDelivery(ctx, task, 3);
        await ctx.tasks.delete(task);
      }
      const delivered = await ctx.updates.receive(10, 0);
      const messages = delivered.map((m) => parseMessage(UpdateMessage, m.body, 'updates'));
      await handleUpdates(ctx, messages).catch((error: Error) => {
        expect(error.message).toBe('the aggregator died');
        lost = messages;
      });
      for (const m of lost ? [] : delivered) await ctx.updates.delete(m);
    }
    expect((await readJson<RunState>(ctx.store, keys.state('forum', runId))).value.status).toBe('done');
    // The redelivery finds the run done, releases the dataset, and asks for the pending refit.
    await handleUpdates(ctx, lost);
    // Released; the refit stays pending on the marker until a new run claims the dataset.
    expect((await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value).toMatchObject({ runId, ended: true, pendingRefit: true });
    const [refit] = await ctx.tasks.receive(10, 0);
    expect(JSON.parse(refit.body)).toEqual({ kind: 'refit', dataset: 'forum', after: runId });
  });

  it('a pending refit survives an aggregator that crashed between the release and sending the refit; copies of it start one run', async () => {
    const ctx = await withDataset();
    const runId = ((await requestRefit(ctx, 'forum', ctx.kernel)) as { started: string }).started;
    await requestRefit(ctx, 'forum', ctx.kernel); // coalesced: a refit is pending
    const send = ctx.tasks.send.bind(ctx.tasks);
    let crashed = false;
    ctx.tasks.send = async (body, options) => {
      if (!crashed && JSON.parse(body).kind === 'refit') {
        crashed = true;
        throw new Error('the aggregator died');
      }
      return send(body, options);
    };
    await expect(drive(ctx)).rejects.toThrow('the aggregator died');
    expect((await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value).toMatchObject({ runId, ended: true, pendingRefit: true });
    // The update is redelivered (still in flight here, so a copy of it): the run is done and
    // released, but the refit is still owed. A later stale completion sends it again.
    const redelivery: UpdateMessage = { kind: 'round-complete', dataset: 'forum', runId, roundId: 'the-last-round' };
    await handleUpdates(ctx, [redelivery]);
    await handleUpdates(ctx, [redelivery]);
    const refits = await ctx.tasks.receive(10, 0);
    expect(refits.map((m) => JSON.parse(m.body))).toEqual([
      { kind: 'refit', dataset: 'forum', after: runId },
      { kind: 'refit', dataset: 'forum', after: runId },
    ]);
    await handleTaskDelivery(ctx, refits[0], 3);
    const next = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    expect(next.runId).not.toBe(runId);
    // The copy finds the dataset claimed since the release: served, nothing more is pending.
    await handleTaskDelivery(ctx, refits[1], 3);
    expect((await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value).toEqual(next);
    for (const m of refits) await ctx.tasks.delete(m);
    expect(await drive(ctx)).toMatchObject({ runId: next.runId, status: 'done', rows: 1000 });
    expect((await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value).toMatchObject({ runId: next.runId, ended: true, pendingRefit: false });
    expect(await ctx.tasks.depth()).toBe(0);
  });

  it('coalesces requests while a run is going into one pending refit, started when the run ends', async () => {
    const ctx = await withDataset();
    const first = await requestRefit(ctx, 'forum', ctx.kernel);
    expect(first).toHaveProperty('started');
    const runId = (first as { started: string }).started;
    expect(await requestRefit(ctx, 'forum', ctx.kernel)).toEqual({ coalesced: runId });
    expect(await requestRefit(ctx, 'forum', ctx.kernel)).toEqual({ coalesced: runId });
    const marker = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    expect(marker).toMatchObject({ runId, pendingRefit: true });

    // The run ends; the aggregator frees the dataset and asks for the pending refit, which the
    // worker role turns into the next run.
    const progress = await drive(ctx);
    expect(progress.status).toBe('done');
    const [refit] = await ctx.tasks.receive(10, 0);
    expect(JSON.parse(refit.body)).toEqual({ kind: 'refit', dataset: 'forum', after: runId });
    await handleTaskDelivery(ctx, refit, 3);
    const after = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    expect(after.runId).not.toBe(runId);
    expect(after.ended).toBeUndefined();
    const second = (await readJson<RunState>(ctx.store, keys.state('forum', after.runId))).value;
    expect(second.status).toBe('running');
  });

  it('a pending refit set while the run is being released is not lost', async () => {
    const ctx = await withDataset();
    const { started } = (await requestRefit(ctx, 'forum', ctx.kernel)) as { started: string };
    // A request lands between the aggregator's read of the marker and its write.
    const store = ctx.store;
    const realPut = store.put.bind(store);
    let raced = false;
    store.put = async (key, body, options) => {
      if (key === keys.activeRun('forum') && !raced && JSON.parse(String(body)).ended) {
        raced = true;
        await requestRefit(ctx, 'forum', ctx.kernel);
      }
      return realPut(key, body, options);
    };
    expect(await releaseDataset(ctx, 'forum', started)).toBe(true);
    expect(raced).toBe(true);
  });

  it('replaces a run that made no progress for too long, marking it failed', async () => {
    const ctx = await withDataset();
    const { started } = (await requestRefit(ctx, 'forum', ctx.kernel)) as { started: string };
    const later = new Date(Date.now() + 2 * 60 * 60 * 1000);
    const outcome = await requestRefit(ctx, 'forum', ctx.kernel, {}, { now: later });
    expect(outcome).toHaveProperty('started');
    const old = (await readJson<RunState>(ctx.store, keys.state('forum', started))).value;
    expect(old.status).toBe('failed');
    expect(old.failure).toMatch(/^abandoned: no progress since/);
  });

  it('a planning failure frees the dataset and reports the cause', async () => {
    const ctx = await withDataset();
    await ctx.store.put('datasets/forum/model.json', JSON.stringify({ target: 'nope' }));
    await expect(requestRefit(ctx, 'forum', ctx.kernel)).rejects.toThrow('unknown target column "nope"');
    const marker = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    expect(marker.ended).toBe(true);
    await ctx.store.put('datasets/forum/model.json', JSON.stringify({ target: 'y' }));
    expect(await requestRefit(ctx, 'forum', ctx.kernel)).toHaveProperty('started');
    const [task] = await ctx.tasks.receive(1, 0);
    expect(parseMessage(TasksQueueMessage, task.body, 'tasks').kind).toBe('task');
  });
});

/**
 * Issue 7 item 3a: an ingest that dies mid-planning. Its process is gone: no catch block frees the
 * dataset, so the claim stays. Here a write of the planner never returns (the process froze and
 * was killed); Lambda then retries the same event.
 */
describe('ingest dies mid-planning', () => {
  /** Make the next put of `key` (or of the first key matching) hang for ever, as a killed process would. */
  function dieAtPut(ctx: Awaited<ReturnType<typeof withDataset>>, match: (key: string) => boolean) {
    const put = ctx.store.put.bind(ctx.store);
    let died = false;
    ctx.store.put = (key, body, options) => {
      if (!died && match(key)) {
        died = true;
        return new Promise(() => undefined);
      }
      return put(key, body, options);
    };
    return () => died;
  }

  async function until(condition: () => Promise<boolean> | boolean) {
    for (let i = 0; i < 1000 && !(await condition()); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await condition()).toBe(true);
  }

  it('the retry of the same upload takes its claim over and fits every row, with later uploads in it', async () => {
    const ctx = await withDataset();
    const died = dieAtPut(ctx, (key) => key.endsWith('/manifest.json'));
    void requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-1' }); // never returns
    await until(died);
    const claim = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    expect(claim).toMatchObject({ request: 'upload-1', pendingRefit: false });
    // Another upload meanwhile cannot tell a slow planner from a dead one: it coalesces.
    await ctx.store.put('datasets/forum/data/b.csv', readFileSync('examples/forum.csv'));
    expect(await requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-2' })).toEqual({ coalesced: claim.runId });
    expect(await ctx.store.head(keys.state('forum', claim.runId))).toBeUndefined(); // that run never came to exist

    const retry = await requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-1' });
    expect(retry).toHaveProperty('started');
    const runId = (retry as { started: string }).started;
    expect(runId).not.toBe(claim.runId);
    expect(await drive(ctx)).toMatchObject({ runId, status: 'done', rows: 2000 });
    // Planned after both uploads, so no refit is owed: the marker is released with none pending.
    expect((await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value).toMatchObject({ runId, ended: true, pendingRefit: false });
    // A late duplicate of the same event changes nothing: its run served it.
    expect(await requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-1' })).toEqual({ started: runId });
    expect(await ctx.tasks.depth()).toBe(0);
  });

  it('with no retry, any request takes over a claim that was never planned once the planning timeout passed', async () => {
    const ctx = await withDataset();
    const died = dieAtPut(ctx, (key) => key.endsWith('/manifest.json'));
    void requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-1' });
    await until(died);
    const claim = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    const soon = new Date(Date.parse(claim.startedAt) + PLANNING_TIMEOUT_MS - 1000);
    expect(await requestRefit(ctx, 'forum', ctx.kernel, {}, { now: soon })).toEqual({ coalesced: claim.runId });
    const later = new Date(Date.parse(claim.startedAt) + PLANNING_TIMEOUT_MS);
    const outcome = await requestRefit(ctx, 'forum', ctx.kernel, {}, { now: later });
    expect(outcome).toHaveProperty('started');
    expect(await drive(ctx)).toMatchObject({ status: 'done', rows: 1000 });
  });

  it('a retry after the planner died between writing the state and sending the first tasks sends them', async () => {
    const ctx = await withDataset();
    const sendBatch = ctx.tasks.sendBatch.bind(ctx.tasks);
    let died = false;
    ctx.tasks.sendBatch = (entries) => (died ? sendBatch(entries) : ((died = true), new Promise(() => undefined)));
    void requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-1' });
    await until(() => died);
    const { runId } = (await readJson<ActiveRun>(ctx.store, keys.activeRun('forum'))).value;
    expect((await readJson<RunState>(ctx.store, keys.state('forum', runId))).value.status).toBe('running');
    expect(await ctx.tasks.depth()).toBe(0); // a run that would wait an hour to be abandoned

    expect(await requestRefit(ctx, 'forum', ctx.kernel, {}, { request: 'upload-1' })).toEqual({ started: runId });
    expect(await drive(ctx)).toMatchObject({ runId, status: 'done', rows: 1000 });
  });
});
