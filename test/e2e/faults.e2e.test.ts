/**
 * End-to-end fault cases of the serverless pipeline (issue "Serverless pipeline on AWS";
 * DESIGN.md §4: nothing lost, nothing counted twice, a task that keeps failing is dead-lettered
 * with its reason, a duplicate changes nothing, a crashed worker's shard is redone).
 *
 * Every case but the aggregator race runs the real Lambda handlers against the emulator with
 * pollers standing in for the event source mappings (see stack.ts). The race needs conditional
 * puts, which the emulator ignores, so it runs the same aggregator code on MemoryObjectStore,
 * which enforces them as S3 does.
 *
 * Each case fits its own dataset (so no run sees another's objects) and the queues are purged
 * between cases. Runs are kept short: 1000 rows in 10 objects, shards of about 100 rows, one SVI
 * epoch and two batch sweeps; the cases check bookkeeping, not the fit.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent, Context } from 'aws-lambda';
import { parseConfig } from '../../lib/config.js';
import { loadKernel } from '../../lib/kernel/backend.js';
import { handleUpdates } from '../../lib/pipeline/aggregator.js';
import type { ActiveRun } from '../../lib/pipeline/ingest.js';
import { MemoryQueue } from '../../lib/pipeline/memory-queue.js';
import { MemoryObjectStore } from '../../lib/pipeline/memory-store.js';
import { planRun } from '../../lib/pipeline/planner.js';
import { PreconditionFailedError, type ObjectStore, type QueueMessage } from '../../lib/pipeline/ports.js';
import { keys, parseMessage, UpdateMessage, updateSendOptions, type ResultMessage } from '../../lib/pipeline/protocol.js';
import { readJson, type Log, type Manifest, type RunState } from '../../lib/pipeline/run.js';
import { handleTaskDelivery, WorkerCache } from '../../lib/pipeline/worker.js';
import type { PosteriorDocument } from '../../lib/model/summary.js';
import { pollUntil } from '../support/lambda-poller.js';
import {
  captureLogs,
  datasetReleased,
  eventSources,
  forumLines,
  lambdaContext,
  loadHandlers,
  partKey,
  purgeQueues,
  queueBodies,
  queueDepth,
  readObject,
  runEnded,
  runsOf,
  runState,
  splitCsv,
  startRun,
  startStack,
  statusCommand,
  upload,
  type EmulatedStack,
  type Handlers,
} from './stack.js';

const PARTS = 10;
const MODEL = { target: 'y', seed: 3, schedule: { shardRows: 100, sviEpochs: 1, maxSweeps: 2, tolerance: 1e-4 } };
/** Short, so that a crashed or failed task comes back quickly (as on AWS, after the timeout). */
const TASKS_VISIBILITY_SECONDS = 3;
const RUN_TIMEOUT_MS = 60_000;

let stack: EmulatedStack;
let handlers: Handlers;
let logs: ReturnType<typeof captureLogs>;

beforeAll(async () => {
  stack = await startStack({ tasksVisibilitySeconds: TASKS_VISIBILITY_SECONDS, updatesVisibilitySeconds: 5 });
  logs = captureLogs();
  handlers = await loadHandlers(stack);
});

afterEach(async () => {
  // Pollers are stopped by pollUntil; leftovers (results of a failed run, orphan tasks) go.
  await purgeQueues(stack);
});

afterAll(async () => {
  logs?.restore();
  await stack?.stop();
});

function forumParts(): string[] {
  const { header, rows } = forumLines();
  return splitCsv(header, rows, PARTS);
}

async function result(dataset: string, runId: string) {
  return readObject<PosteriorDocument & { skipped: { file: string; line: number; column: string; value: string; reason: string }[] }>(
    stack,
    keys.result(dataset, runId, 'posterior.json'),
  );
}

/** The bookkeeping every finished run must satisfy: each shard counted once, each task applied once. */
function expectCountedOnce(state: RunState, manifest: Manifest, rows: number) {
  expect(state.status).toBe('done');
  expect(new Set(state.applied).size).toBe(state.applied.length);
  expect(Object.keys(state.shards)).toHaveLength(manifest.shards.length);
  expect(Object.values(state.shards).reduce((s, c) => s + c.rows, 0)).toBe(rows);
  expect(state.totalRows).toBe(rows);
  // One SVI pass and two sweeps, each over every shard, nothing more.
  expect(state.applied).toHaveLength(3 * manifest.shards.length);
  expect(state.inFlight).toEqual({});
}

const logsWith = (message: string) => logs.entries.filter((e) => e.message === message);

describe('faults on the emulated stack', () => {
  it('a worker that dies mid-task: the shard is redone after the visibility timeout, rows counted once', async () => {
    const dataset = 'forum-crash';
    const runId = await startRun(stack, handlers, dataset, MODEL, forumParts());
    let crashed: { messageId: string; taskId: string } | undefined;
    const { workers, aggregator } = eventSources(stack, handlers, {
      workers: {
        // The first task delivered dies with its worker: taken from the queue, never answered.
        intercept: (record) => {
          if (crashed) return 'deliver';
          crashed = { messageId: record.messageId, taskId: (JSON.parse(record.body) as { taskId: string }).taskId };
          return 'crash';
        },
      },
    });
    await pollUntil([workers, aggregator], runEnded(stack, dataset, runId), { timeoutMs: RUN_TIMEOUT_MS, description: 'crash run ended' });

    expect(crashed).toBeDefined();
    const deliveries = workers.deliveriesOf(crashed!.messageId);
    expect(deliveries.map((d) => [d.receiveCount, d.outcome])).toEqual([
      [1, 'crashed'],
      [2, 'deleted'],
    ]);
    const state = (await runState(stack, dataset, runId))!;
    const manifest = await readObject<Manifest>(stack, keys.manifest(dataset, runId));
    expectCountedOnce(state, manifest, 1000);
    expect(state.applied.filter((t) => t === crashed!.taskId)).toHaveLength(1);
    const posterior = await result(dataset, runId);
    expect(posterior.rows).toBe(1000);
    expect(posterior.skippedRows).toBe(0);
  });

  it('duplicated update messages are applied once', async () => {
    const dataset = 'forum-dup';
    const runId = await startRun(stack, handlers, dataset, MODEL, forumParts());
    const copied: string[] = [];
    const sameId: string[] = [];
    const send = (body: string, deduplicationId: string) =>
      stack.emulator.sqs.send(
        new SendMessageCommand({ QueueUrl: stack.queues.updates.url, MessageBody: body, MessageGroupId: runId, MessageDeduplicationId: deduplicationId }),
      );
    // Before the aggregator sees a result, a copy goes to the updates queue with a deduplication
    // id of its own (so FIFO deduplication lets it through), for the first two SVI results and
    // the first batch result; a second copy with the original's id is dropped by the queue.
    const duplicating = async (event: SQSEvent, context: Context) => {
      for (const record of event.Records) {
        const m = JSON.parse(record.body) as ResultMessage;
        const want = m.kind === 'result' && (m.phase === 'svi' ? copied.filter((t) => t.startsWith('svi')).length < 2 : !copied.some((t) => t.startsWith('batch')));
        if (!want || copied.includes(m.taskId)) continue;
        copied.push(m.taskId);
        await send(record.body, `copy-${m.taskId}`);
        if (sameId.length === 0) {
          sameId.push(m.taskId);
          await send(record.body, updateSendOptions(m).deduplicationId);
        }
      }
      return handlers.aggregator(event, context);
    };
    const { workers, aggregator } = eventSources(stack, { ...handlers, aggregator: duplicating });
    await pollUntil([workers, aggregator], runEnded(stack, dataset, runId), { timeoutMs: RUN_TIMEOUT_MS, description: 'duplicates run ended' });

    expect(copied).toHaveLength(3);
    const deliveredResults = aggregator.deliveries.map((d) => JSON.parse(d.body) as ResultMessage);
    for (const taskId of copied) {
      // Original and copy both reached the aggregator and both were acknowledged...
      const deliveries = aggregator.deliveries.filter((d, i) => deliveredResults[i].taskId === taskId);
      expect(deliveries.map((d) => d.outcome), taskId).toEqual(['deleted', 'deleted']);
      // ...and the copy was recognized and ignored.
      expect(logsWith('duplicate result ignored').filter((e) => e.taskId === taskId), taskId).toHaveLength(1);
    }
    // copied[0] was also sent with the original's deduplication id: the queue dropped that one
    // (two deliveries above, not three).
    expect(sameId).toEqual([copied[0]]);

    const state = (await runState(stack, dataset, runId))!;
    const manifest = await readObject<Manifest>(stack, keys.manifest(dataset, runId));
    expectCountedOnce(state, manifest, 1000);
    for (const taskId of copied) expect(state.applied.filter((t) => t === taskId), taskId).toHaveLength(1);
    expect((await result(dataset, runId)).rows).toBe(1000);
  });

  it('a shard with corrupt rows: they are skipped, counted and reported with file and line; the run completes', async () => {
    const dataset = 'forum-corrupt';
    const parts = forumParts();
    const lines = parts[4].trimEnd().split('\n');
    // File lines (the header is line 1) → the bad text.
    const bad = new Map<number, { text: string; column: string; value: string; reason: string }>([
      [7, { text: 'abc,1.5,2.5', column: 'x1', value: 'abc', reason: 'not a number' }],
      [31, { text: '0.5,,1.0', column: 'x2', value: '', reason: 'missing value' }],
      [60, { text: '1.25,-0.5,NA', column: 'y', value: 'NA', reason: 'missing value' }],
      [88, { text: '1.0,2.0', column: '', value: '1.0,2.0', reason: 'expected 3 fields, found 2' }],
    ]);
    for (const [line, { text }] of [...bad].sort((a, b) => a[0] - b[0])) lines.splice(line - 1, 0, text);
    parts[4] = lines.join('\n') + '\n';
    const runId = await startRun(stack, handlers, dataset, MODEL, parts);
    const { workers, aggregator } = eventSources(stack, handlers);
    await pollUntil([workers, aggregator], runEnded(stack, dataset, runId), { timeoutMs: RUN_TIMEOUT_MS, description: 'corrupt run ended' });

    const state = (await runState(stack, dataset, runId))!;
    const manifest = await readObject<Manifest>(stack, keys.manifest(dataset, runId));
    expect(state.failure).toBeUndefined();
    expectCountedOnce(state, manifest, 1000);
    const posterior = await result(dataset, runId);
    expect(posterior.rows).toBe(1000);
    expect(posterior.skippedRows).toBe(bad.size);
    expect(posterior.skipped.map((s) => ({ file: s.file, line: s.line, column: s.column, value: s.value, reason: s.reason }))).toEqual(
      [...bad].map(([line, b]) => ({ file: partKey(dataset, 4), line, column: b.column, value: b.value, reason: b.reason })),
    );
    const status = await statusCommand(stack, dataset, logs);
    expect(status.code).toBe(0);
    expect(status.printed).toContain(`run ${runId}: done`);
    expect(status.printed).toContain(`1000 rows, ${bad.size} skipped`);
  });

  describe('poison messages on the tasks queue', () => {
    it('are dead-lettered after 3 receives with the reason logged; one that names the run fails it', async () => {
      const dataset = 'forum-poison';
      const runId = await startRun(stack, handlers, dataset, MODEL, forumParts());
      const poison = {
        garbage: 'this is {not JSON',
        // Names the run and a task that is not one of its own: dead-lettered, the run is not failed for it.
        foreignTask: JSON.stringify({ kind: 'task', dataset, runId, taskId: 'poison' }),
        // Names the run but no task: the aggregator cannot tell which task is lost, so the run fails.
        noTask: JSON.stringify({ kind: 'task', dataset, runId }),
      };
      for (const body of Object.values(poison)) {
        await stack.emulator.sqs.send(new SendMessageCommand({ QueueUrl: stack.queues.tasks.url, MessageBody: body }));
      }
      const { workers, aggregator } = eventSources(stack, handlers);
      // Workers alone first, so the run cannot end before the poison is dead-lettered.
      await pollUntil([workers], () => queueDepth(stack, stack.queues.tasksDeadLetter) === 3, {
        timeoutMs: 30_000,
        description: 'three poison messages dead-lettered',
      });
      expect(queueBodies(stack, stack.queues.tasksDeadLetter).sort()).toEqual(Object.values(poison).sort());
      for (const [name, body] of Object.entries(poison)) {
        const tries = workers.deliveries.filter((d) => d.body === body);
        expect(tries.map((d) => [d.receiveCount, d.outcome]), name).toEqual([
          [1, 'failed'],
          [2, 'failed'],
          [3, 'failed'],
        ]);
      }
      const failures = logsWith('task failed');
      const reasonsOf = (taskId: string | undefined, pattern: RegExp) =>
        failures.filter((e) => e.taskId === taskId && pattern.test(String(e.reason))).map((e) => e.receiveCount);
      // No body parses as a task, so no log line has a task id; the garbage and the two malformed
      // tasks are told apart by their reasons.
      expect(reasonsOf(undefined, /^ProtocolError: tasks: message is not JSON: this is \{not JSON/)).toEqual([1, 2, 3]);
      expect(reasonsOf(undefined, /^ProtocolError: tasks: malformed message \(.+\)$/).sort()).toEqual([1, 1, 2, 2, 3, 3]);
      // The last delivery of each body that names the run reported the task lost to the aggregator.
      const reports = queueBodies(stack, stack.queues.updates)
        .map((b) => JSON.parse(b) as { kind: string; taskId: string; reason: string })
        .filter((m) => m.kind === 'task-failed');
      expect(reports.map((r) => r.taskId).sort()).toEqual(['poison', 'unknown']);

      await pollUntil([workers, aggregator], runEnded(stack, dataset, runId), { timeoutMs: RUN_TIMEOUT_MS, description: 'poisoned run ended' });
      const state = (await runState(stack, dataset, runId))!;
      expect(state.status).toBe('failed');
      expect(state.failure).toMatch(/^task unknown failed for good: ProtocolError: tasks: malformed message \(taskId: .*\)/);
      expect(logsWith('run failed').some((e) => e.runId === runId && e.reason === state.failure)).toBe(true);
      expect(await datasetReleased(stack, dataset)).toBe(true); // free for the next upload
      expect(await stack.store.head(keys.result(dataset, runId, 'posterior.json'))).toBeUndefined();

      const status = await statusCommand(stack, dataset, logs);
      expect(status.code).toBe(1);
      expect(status.printed).toContain(`run ${runId}: failed`);
      expect(status.printed).toContain(`failed: ${state.failure}`);
      expect(status.printed).toContain('dead letters (tasks): 3');
      expect(status.printed).toContain('dead letters (updates): 0');
    });

    it('a task that fails on every delivery (its data object vanished) is dead-lettered and fails the run with its reason', async () => {
      const dataset = 'forum-vanished';
      const runId = await startRun(stack, handlers, dataset, MODEL, forumParts());
      const manifest = await readObject<Manifest>(stack, keys.manifest(dataset, runId));
      const lost = partKey(dataset, 6);
      const lostShards = manifest.shards.filter((s) => manifest.files[s.file].key === lost).map((s) => s.index);
      await stack.store.delete(lost); // after planning: the shards of this object cannot be read
      const { workers, aggregator } = eventSources(stack, handlers);
      await pollUntil([workers, aggregator], runEnded(stack, dataset, runId), { timeoutMs: RUN_TIMEOUT_MS, description: 'run with a lost object ended' });

      const state = (await runState(stack, dataset, runId))!;
      expect(state.status).toBe('failed');
      expect(state.failure).toMatch(new RegExp(`^task svi-0-(${lostShards.join('|')})-v\\d+-\\w+ failed for good: NotFoundError: object not found: ${lost}$`));
      const failedTask = /^task (\S+) /.exec(state.failure!)![1];
      expect(
        logsWith('task failed')
          .filter((e) => e.taskId === failedTask)
          .map((e) => e.receiveCount),
      ).toEqual([1, 2, 3]);
      // The message moves to the dead-letter queue on the first receive after its third delivery's
      // visibility timeout, so the workers poll on until then.
      await pollUntil([workers], () => queueBodies(stack, stack.queues.tasksDeadLetter).some((b) => b.includes(failedTask)), {
        timeoutMs: 10_000,
        description: 'the failed task dead-lettered',
      });
      const status = await statusCommand(stack, dataset, logs);
      expect(status.code).toBe(1);
      expect(status.printed).toContain(`failed: ${state.failure}`);
    });
  });

  it('uploads while a run is going coalesce into one pending refit, started when the run ends', async () => {
    const dataset = 'forum-refit';
    await upload(stack, [{ key: keys.modelConfig(dataset), body: JSON.stringify(MODEL) }]);
    const parts = forumParts();
    const event = await upload(stack, parts.map((body, i) => ({ key: partKey(dataset, i), body })));
    // S3 notifies ingest once per object: the first starts a run, the other nine coalesce.
    const outcomes = await handlers.ingest(event, lambdaContext('Clusterwise-Ingest'));
    const first = outcomes[partKey(dataset, 0)] as { started: string };
    expect(first).toHaveProperty('started');
    const run1 = first.started;
    for (let i = 1; i < PARTS; i++) expect(outcomes[partKey(dataset, i)], `part ${i}`).toEqual({ coalesced: run1 });
    expect(await readObject<ActiveRun>(stack, keys.activeRun(dataset))).toMatchObject({ runId: run1, pendingRefit: true });
    expect(await runsOf(stack, dataset)).toEqual([run1]);

    const { workers, aggregator } = eventSources(stack, handlers);
    const bothEnded = async () => {
      const runs = await runsOf(stack, dataset);
      if (runs.length < 2 || !(await datasetReleased(stack, dataset))) return false;
      const states = await Promise.all(runs.map((r) => runState(stack, dataset, r)));
      return states.every((s) => s && s.status !== 'running');
    };
    await pollUntil([workers, aggregator], bothEnded, { timeoutMs: 90_000, description: 'run and refit ended' });

    const runs = await runsOf(stack, dataset);
    expect(runs).toHaveLength(2); // one refit for nine uploads
    const run2 = runs.find((r) => r !== run1)!;
    const refits = workers.deliveries.filter((d) => d.body === JSON.stringify({ kind: 'refit', dataset }));
    expect(refits.map((d) => d.outcome)).toEqual(['deleted']);
    expect(logsWith('refit requested by the aggregator').filter((e) => e.dataset === dataset).map((e) => e.started)).toEqual([run2]);
    for (const runId of [run1, run2]) {
      const state = (await runState(stack, dataset, runId))!;
      expectCountedOnce(state, await readObject<Manifest>(stack, keys.manifest(dataset, runId)), 1000);
    }
    const manifest2 = await readObject<Manifest>(stack, keys.manifest(dataset, run2));
    expect(manifest2.warmStartFrom).toBe(run1); // the refit starts from the model the first run wrote
    expect(await readObject<{ runId: string }>(stack, keys.latestModel(dataset))).toMatchObject({ runId: run2 });
    // The marker names the refit's run, ended, with no refit pending: nothing more will start.
    expect(await readObject<ActiveRun>(stack, keys.activeRun(dataset))).toMatchObject({ runId: run2, ended: true, pendingRefit: false });
    expect((await result(dataset, run2)).rows).toBe(1000);
  });
});

/**
 * Two aggregators for one run. On AWS the FIFO group keeps one aggregator per run, except when
 * an invocation outlives the queue's visibility timeout and its batch is delivered again to a
 * second one. The state's conditional put (If-Match) must then let exactly one of them win.
 * fauxqs ignores If-Match, so this runs on MemoryObjectStore (which enforces it like S3) and
 * memory queues, with the same planner, worker and aggregator code as the handlers.
 */
describe('two aggregators racing (MemoryObjectStore enforces conditional puts)', () => {
  const dataset = 'race';

  /** Holds every If-Match write of `key` until `readers` reads of it happened: both aggregators read the same state. */
  function racing(inner: ObjectStore, key: string, readers: number): ObjectStore {
    let reads = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    return {
      get: async (k) => {
        const out = await inner.get(k);
        if (k === key && ++reads >= readers) open();
        return out;
      },
      getRange: (k, s, e) => inner.getRange(k, s, e),
      head: (k) => inner.head(k),
      put: async (k, body, options) => {
        if (k === key && options?.ifMatch) await gate;
        return inner.put(k, body, options);
      },
      list: (p) => inner.list(p),
      delete: (k) => inner.delete(k),
    };
  }

  it('exactly one wins; after redelivery each result is applied once and the run ends with every row counted once', async () => {
    const store = new MemoryObjectStore();
    for (const [i, body] of forumParts().entries()) await store.put(partKey(dataset, i), body);
    const logLines: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
    const log: Log = {
      info: (message, fields) => void logLines.push({ level: 'info', message, fields }),
      warn: (message, fields) => void logLines.push({ level: 'warn', message, fields }),
      error: (message, fields) => void logLines.push({ level: 'error', message, fields }),
    };
    const deadTasks = new MemoryQueue({ name: 'tasks-dlq' });
    const tasks = new MemoryQueue({ name: 'tasks', visibilityTimeoutSeconds: 60, maxReceiveCount: 3, deadLetter: deadTasks });
    const updates = new MemoryQueue({ name: 'updates.fifo', fifo: true, visibilityTimeoutSeconds: 60 });
    const kernel = await loadKernel('auto');
    const ctx = { store, tasks, updates, log };
    const manifest = await planRun(ctx, { dataset, config: parseConfig(MODEL), warmStart: false }, kernel);
    const stateKey = keys.state(dataset, manifest.runId);
    const cache = new WorkerCache();
    const work = async () => {
      for (let [task] = await tasks.receive(1); task; [task] = await tasks.receive(1)) {
        await handleTaskDelivery({ ...ctx, kernel }, task, 3, cache);
        await tasks.delete(task);
      }
    };
    const parse = (m: QueueMessage) => parseMessage(UpdateMessage, m.body, 'updates');
    const receiveResults = async (n: number) => {
      const got: QueueMessage[] = [];
      while (got.length < n) {
        const batch = await updates.receive(n - got.length);
        if (batch.length === 0) throw new Error(`only ${got.length} of ${n} results`);
        got.push(...batch);
      }
      return got;
    };
    const race = async (a: QueueMessage[], b: QueueMessage[]) => {
      const racingStore = racing(store, stateKey, 2);
      const outcomes = await Promise.allSettled([
        handleUpdates({ ...ctx, store: racingStore }, a.map(parse)),
        handleUpdates({ ...ctx, store: racingStore }, b.map(parse)),
      ]);
      const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      expect(rejected).toHaveLength(1);
      expect(rejected[0].reason).toBeInstanceOf(PreconditionFailedError);
      return outcomes[0].status === 'fulfilled' ? { winner: a, loser: b } : { winner: b, loser: a };
    };
    const applied = async () => (await readJson<RunState>(store, stateKey)).value.applied;

    // The planner's first tasks (4 in flight), done by a worker: four results wait.
    await work();
    const [m1, m2, m3, m4] = await receiveResults(4);

    // Different results, same starting state: one state write wins, the other throws, and the
    // loser's message, not deleted, is delivered again and applied on top of the winner's state.
    const first = await race([m1], [m2]);
    expect(await applied()).toEqual([parse(first.winner[0]).taskId]);
    await handleUpdates(ctx, first.loser.map(parse)); // the redelivery
    expect((await applied()).sort()).toEqual([m1, m2].map((m) => parse(m).taskId).sort());

    // The same result delivered to both: one wins, the redelivery to the loser is a duplicate.
    await race([m3], [m3]);
    await handleUpdates(ctx, [parse(m3)]);
    expect((await applied()).filter((t) => t === parse(m3).taskId)).toHaveLength(1);
    await handleUpdates(ctx, [parse(m4)]);
    for (const m of [m1, m2, m3, m4]) await updates.delete(m);

    // The losers sent tasks before their state write failed (tasks go first, see aggregator.ts):
    // orphans whose results the aggregator ignores. Run to the end with one aggregator.
    for (let rounds = 0; ; rounds++) {
      expect(rounds).toBeLessThan(500);
      await work();
      const batch = await updates.receive(10);
      if (batch.length === 0) break;
      await handleUpdates(ctx, batch.map(parse));
      for (const m of batch) await updates.delete(m);
    }
    const state = (await readJson<RunState>(store, stateKey)).value;
    expectCountedOnce(state, manifest, 1000);
    const orphans = logLines.filter((l) => l.message === 'result of an unknown task ignored');
    expect(orphans.length).toBeGreaterThanOrEqual(1);
    for (const o of orphans) expect(state.applied).not.toContain(o.fields?.taskId);
    expect(logLines.filter((l) => l.message === 'duplicate result ignored').map((l) => l.fields?.taskId)).toContain(parse(m3).taskId);
    const posterior = (await readJson<PosteriorDocument>(store, state.resultKey!)).value;
    expect(posterior.rows).toBe(1000);
  });
});
