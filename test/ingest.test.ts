/** Starting runs: coalescing uploads into one pending refit, releasing, abandoned runs. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { datasetOfDataKey, releaseDataset, requestRefit, type ActiveRun } from '../lib/pipeline/ingest.js';
import { keys, parseMessage, TasksQueueMessage } from '../lib/pipeline/protocol.js';
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
    expect(JSON.parse(refit.body)).toEqual({ kind: 'refit', dataset: 'forum' });
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
