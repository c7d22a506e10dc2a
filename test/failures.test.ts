/**
 * Permanent failures go to the dead-letter queue at once and fail their run with the reason;
 * transient ones are redelivered (issue 7 item 13; lib/pipeline/failures.ts, update-delivery.ts).
 * Memory ports; the same paths on the emulator are in test/e2e/faults.e2e.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../lib/config.js';
import { DataError } from '../lib/data/errors.js';
import { ClusterwiseError, ConflictError, isRetryable } from '../lib/errors.js';
import { NotPositiveDefiniteError } from '../lib/math/linalg.js';
import { PosteriorFileError } from '../lib/model/predict.js';
import { MemoryQueue } from '../lib/pipeline/memory-queue.js';
import { planRun } from '../lib/pipeline/planner.js';
import { NotFoundError, PortError, PreconditionFailedError, type QueueMessage } from '../lib/pipeline/ports.js';
import { decodeBinary, encodeBinary } from '../lib/pipeline/binary.js';
import { groupCount, keys, parseMessage, ProtocolError, UpdateMessage } from '../lib/pipeline/protocol.js';
import { readJson, type RunState } from '../lib/pipeline/run.js';
import { handleUpdateDelivery } from '../lib/pipeline/update-delivery.js';
import { handleTaskDelivery, NonFiniteResultError } from '../lib/pipeline/worker.js';
import { inlinePorts } from './support/inline-pipeline.js';

const forum = readFileSync('examples/forum.csv');

/** A planned run of the forum example over memory ports with both dead-letter queues. */
async function plannedRun() {
  const ctx = inlinePorts();
  const deadLetter = { tasks: new MemoryQueue({ name: 'tasks-dlq' }), updates: new MemoryQueue({ name: 'updates-dlq.fifo', fifo: true }) };
  Object.assign(ctx, { deadLetter });
  await ctx.store.put('datasets/forum/data/a.csv', forum);
  const manifest = await planRun(ctx, { dataset: 'forum', config: parseConfig({ target: 'y', components: 4, schedule: { shardRows: 250 } }) }, ctx.kernel);
  const state = async () => (await readJson<RunState>(ctx.store, keys.state('forum', manifest.runId))).value;
  /** Every update now on the queue, as the aggregator Lambda gets them; acknowledged unless retried. */
  const aggregate = async () => {
    const delivered = await ctx.updates.receive(10, 0);
    const out = await handleUpdateDelivery(ctx, delivered);
    for (const m of delivered) if (!out.retry.includes(m.id)) await ctx.updates.delete(m);
    return { delivered, ...out };
  };
  return { ctx, deadLetter, manifest, state, aggregate };
}

async function bodies(queue: MemoryQueue): Promise<string[]> {
  const got: QueueMessage[] = await queue.receive(10, 0);
  return got.map((m) => m.body);
}

describe('errors', () => {
  it('share one base class, with their own name, the cause, and whether a retry may pass', () => {
    const cause = new Error('underneath');
    const permanent = [
      new DataError('not a number', { file: 'a.csv', line: 3 }, { cause }),
      new ConfigError('bad', { cause }),
      new ProtocolError('tasks: malformed message', { cause }),
      new PosteriorFileError('p.json', 'not JSON', { cause }),
    ];
    const transient = [new PortError('throttled', { cause }), new NotFoundError('k', { cause }), new PreconditionFailedError('k', { cause }), new ConflictError('busy', { cause })];
    for (const error of [...permanent, ...transient]) {
      expect(error).toBeInstanceOf(ClusterwiseError);
      expect(error.name).toBe(error.constructor.name);
      expect(error.cause).toBe(cause);
    }
    expect(permanent.map(isRetryable)).toEqual(permanent.map(() => false));
    expect(transient.map(isRetryable)).toEqual(transient.map(() => true));
    expect(new NotPositiveDefiniteError('Λ').retryable).toBe(false);
    // Nothing says a foreign error is permanent: it is retried.
    expect(isRetryable(new TypeError('x is undefined'))).toBe(true);
  });
});

describe('a task that fails for good', () => {
  it('is dead-lettered on its first delivery and acknowledged, and its run fails with the reason', async () => {
    const { ctx, deadLetter, state, aggregate } = await plannedRun();
    await ctx.store.delete('datasets/forum/data/a.csv'); // gone after planning: no delivery can read it
    const [task] = await ctx.tasks.receive(1, 0);
    expect(task.receiveCount).toBe(1);
    await expect(handleTaskDelivery(ctx, task, 3)).resolves.toBeUndefined(); // acknowledged, not redelivered
    expect(await bodies(deadLetter.tasks)).toEqual([task.body]);
    await aggregate();
    const s = await state();
    expect(s.status).toBe('failed');
    expect(s.failure).toMatch(/^task \S+ failed for good: DataError: datasets\/forum\/data\/a\.csv: file not found$/);
  });

  it('a poison result (non-finite) fails the run at once with the shard named', async () => {
    const { ctx, deadLetter, state, aggregate } = await plannedRun();
    const localStep = ctx.kernel.localStep.bind(ctx.kernel);
    ctx.kernel = { ...ctx.kernel, localStep: (params, prepared, options) => ({ ...localStep(params, prepared, options), logLik: Number.NaN }) };
    const [task] = await ctx.tasks.receive(1, 0);
    await handleTaskDelivery(ctx, task, 3);
    expect(await bodies(deadLetter.tasks)).toEqual([task.body]);
    await aggregate();
    const s = await state();
    expect(s.status).toBe('failed');
    expect(s.failure).toMatch(/failed for good: NonFiniteResultError: datasets\/forum\/data\/a\.csv: shard \d+ \(bytes \d+–\d+\): the local step gave a non-finite value/);
    expect(NonFiniteResultError.prototype).toBeInstanceOf(DataError);
  });

  it('without a dead-letter port (the local runner) is reported at once and left to the queue', async () => {
    const { ctx, state, aggregate } = await plannedRun();
    Object.assign(ctx, { deadLetter: undefined });
    await ctx.store.delete('datasets/forum/data/a.csv');
    const [task] = await ctx.tasks.receive(1, 0);
    await expect(handleTaskDelivery(ctx, task, 3)).rejects.toThrow('datasets/forum/data/a.csv: file not found');
    await aggregate();
    expect((await state()).status).toBe('failed');
  });

  it('a transient failure is redelivered: no report, no dead letter', async () => {
    const { ctx, deadLetter, state } = await plannedRun();
    const put = ctx.store.put.bind(ctx.store);
    ctx.store.put = async (key, body, options) => {
      if (key.includes('/rounds/')) throw new Error('socket hang up');
      return put(key, body, options);
    };
    const [task] = await ctx.tasks.receive(1, 0);
    await expect(handleTaskDelivery(ctx, task, 3)).rejects.toThrow('socket hang up');
    expect(await ctx.updates.depth()).toBe(0);
    expect(await deadLetter.tasks.depth()).toBe(0);
    expect((await state()).status).toBe('running');
  });
});

describe('an update that cannot be applied', () => {
  it('one that does not parse goes to the dead-letter queue at once and fails the run it names', async () => {
    const { ctx, deadLetter, manifest, state, aggregate } = await plannedRun();
    const broken = JSON.stringify({ kind: 'round-complete', dataset: 'forum', runId: manifest.runId });
    await ctx.updates.send(broken, { groupId: manifest.runId, deduplicationId: 'broken' });
    await ctx.updates.send('not JSON at all', { groupId: 'other', deduplicationId: 'garbage' });
    const { retry } = await aggregate();
    expect(retry).toEqual([]);
    expect((await bodies(deadLetter.updates)).sort()).toEqual([broken, 'not JSON at all'].sort());
    const s = await state();
    expect(s.status).toBe('failed');
    expect(s.failure).toMatch(/^update \S+ cannot be read: ProtocolError: updates\.fifo: malformed message \(roundId: /);
  });

  it('sums that overflow (each task finite) fail the run with the round named', async () => {
    const { ctx, manifest, state, aggregate } = await plannedRun();
    for (let [task] = await ctx.tasks.receive(1, 0); task; [task] = await ctx.tasks.receive(1, 0)) {
      await handleTaskDelivery(ctx, task, 3);
      await ctx.tasks.delete(task);
    }
    const round = (await state()).round!;
    expect(groupCount(round)).toBeGreaterThan(1);
    // Every group sum as large as a float64 goes: finite alone, infinite added together.
    for (let g = 0; g < groupCount(round); g++) {
      const key = keys.groupSum('forum', manifest.runId, round.id, g);
      const { header, arrays } = decodeBinary<Record<string, unknown>>((await ctx.store.get(key)).body, key);
      await ctx.store.put(key, encodeBinary(header, { stats: new Float64Array(arrays.stats.length).fill(Number.MAX_VALUE) }));
    }
    expect((await aggregate()).retry).toEqual([]);
    const s = await state();
    expect(s.status).toBe('failed');
    expect(s.failure).toBe(`the aggregator cannot go on: NonFiniteSumError: round ${round.id}: the sum of the shards' statistics is not finite; values in the data are too large for the model`);
  });

  it('a permanent error while applying fails the run with the reason; a transient one is redelivered', async () => {
    const { ctx, manifest, state, aggregate } = await plannedRun();
    // Run every task of the first round: its completion waits on the updates queue.
    for (let [task] = await ctx.tasks.receive(1, 0); task; [task] = await ctx.tasks.receive(1, 0)) {
      await handleTaskDelivery(ctx, task, 3);
      await ctx.tasks.delete(task);
    }
    const round = (await state()).round!;
    const groupSum = keys.groupSum('forum', manifest.runId, round.id, 0);

    // Transient: reading the sums fails once; the completion is redelivered, nothing changed.
    const get = ctx.store.get.bind(ctx.store);
    let failOnce = true;
    ctx.store.get = async (key) => {
      if (key === groupSum && failOnce) {
        failOnce = false;
        throw new Error('connection reset');
      }
      return get(key);
    };
    const first = await aggregate();
    expect(first.retry).toEqual(first.delivered.map((m) => m.id));
    expect((await state()).round!.id).toBe(round.id);

    // Permanent: the group sum is not a clusterwise object; the run fails now, the update is acknowledged.
    await ctx.store.put(groupSum, 'garbage');
    ctx.updates.release(first.delivered[0], 0);
    const second = await aggregate();
    expect(second.delivered.map((m) => parseMessage(UpdateMessage, m.body, 'updates').kind)).toEqual(['round-complete']);
    expect(second.retry).toEqual([]);
    const s = await state();
    expect(s.status).toBe('failed');
    expect(s.failure).toBe(`the aggregator cannot go on: ProtocolError: ${groupSum}: not a clusterwise binary object`);
    expect(await ctx.updates.depth()).toBe(0);
  });
});
