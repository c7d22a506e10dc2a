/**
 * The pipeline at scale in real processes: 1M rows, 8 worker processes and an aggregator process
 * against the S3/SQS emulator over HTTP (the planner runs here). The run must count every row
 * once, give the posterior the local fit gives, and make the requests the simulator predicts for
 * the same run (within 10%), which is what makes the simulator's predictions at 100M and 1B rows
 * worth reading (docs/deploy.md §6).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../adapters/aws/s3-object-store.js';
import { SqsQueue } from '../../adapters/aws/sqs-queue.js';
import { paramsWith } from '../../bench/sim/params.js';
import { generatedFiles, SIM_DATASET, SIM_RUN, simulate } from '../../bench/sim/run.js';
import { parseConfig } from '../../lib/config.js';
import { loadKernel } from '../../lib/kernel/backend.js';
import { fitLocal } from '../../lib/local/runner.js';
import type { PosteriorDocument } from '../../lib/model/summary.js';
import { addCounts, countingQueue, countingStore, emptyCounts, type RequestCounts } from '../../lib/pipeline/counting.js';
import { planRun } from '../../lib/pipeline/planner.js';
import { keys } from '../../lib/pipeline/protocol.js';
import { readJson, type RunState } from '../../lib/pipeline/run.js';
import { createBucket, createQueue, startEmulator, type Emulator } from '../support/emulator.js';

const ROWS = 1_000_000;
const WORKERS = 8;
const CONFIG = parseConfig({ target: 'y' });
/** The emulator takes bodies of at most 11 MiB: the data set is 13 objects of 80 000 rows (10 MB). */
const PARAMS = paramsWith(['data.rowsPerFile=80000']);

let emulator: Emulator;
const children: ChildProcess[] = [];

beforeAll(async () => {
  emulator = await startEmulator();
});

afterAll(async () => {
  for (const c of children) c.kill();
  await emulator?.stop();
});

/** A role process (test/support/role-process.ts); resolves when it is ready, `counts` when it reports. */
function startRole(options: Record<string, string>) {
  const child = fork(path.resolve('test/support/role-process.ts'), [JSON.stringify(options)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  children.push(child);
  const messages: unknown[] = [];
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      if (messages.length) return resolve(messages.shift());
      child.once('message', () => resolve(messages.shift()));
      child.once('exit', (code) => reject(new Error(`${options.role} exited with ${code}`)));
    });
  child.on('message', (m) => messages.push(m));
  return { child, next };
}

describe(`${ROWS.toLocaleString('en')} rows, ${WORKERS} worker processes and an aggregator process on the emulator`, () => {
  it('counts every row once, equals the local fit, and makes the requests the simulator predicts', { timeout: 900_000 }, async () => {
    const bucket = await createBucket(emulator.s3, 'scale');
    const dlq = await createQueue(emulator.sqs, 'scale-tasks-dlq');
    const tasksQueue = await createQueue(emulator.sqs, 'scale-tasks', { visibilityTimeoutSeconds: 300, deadLetterQueueArn: dlq.arn, maxReceiveCount: 3 });
    const updatesQueue = await createQueue(emulator.sqs, 'scale-updates.fifo', { fifo: true, contentBasedDeduplication: false, visibilityTimeoutSeconds: 300 });
    const raw = new S3ObjectStore({ client: emulator.s3, bucket });
    const dir = mkdtempSync(path.join(tmpdir(), 'clusterwise-scale-'));
    const files = [...generatedFiles(ROWS, PARAMS)];
    for (const [key, data] of files) {
      const csv = data.range(0, data.size);
      await raw.put(key, csv);
      writeFileSync(path.join(dir, path.basename(key)), csv);
    }

    const roleOptions = { endpoint: emulator.endpoint, bucket, tasks: tasksQueue.url, updates: updatesQueue.url };
    const roles = [...Array.from({ length: WORKERS }, () => startRole({ role: 'worker', ...roleOptions })), startRole({ role: 'aggregator', ...roleOptions })];
    await Promise.all(roles.map((r) => r.next()));

    // The planner, here, with the same counting as the role processes; it announces the shards as
    // the AWS roles do (functions/runtime.ts), and so does the simulator by default, and wakes the
    // workers as with provisioned pollers, the simulator's default scaling.
    const measured = emptyCounts();
    const store = countingStore(raw, measured);
    const ctx = {
      announceShards: true,
      wakeWorkers: PARAMS.lambda.scaling === 'provisioned',
      store,
      tasks: countingQueue(new SqsQueue({ client: emulator.sqs, queueUrl: tasksQueue.url, store }), measured),
      updates: countingQueue(new SqsQueue({ client: emulator.sqs, queueUrl: updatesQueue.url, store }), measured),
    };
    const manifest = await planRun(ctx, { dataset: SIM_DATASET, config: CONFIG, workers: WORKERS, runId: SIM_RUN }, await loadKernel('auto'));

    const aggregator = roles[WORKERS];
    addCounts(measured, ((await aggregator.next()) as { counts: RequestCounts }).counts);
    for (const worker of roles.slice(0, WORKERS)) worker.child.send('stop');
    for (const worker of roles.slice(0, WORKERS)) addCounts(measured, ((await worker.next()) as { counts: RequestCounts }).counts);

    const state = (await readJson<RunState>(raw, keys.state(SIM_DATASET, SIM_RUN))).value;
    expect(state.status).toBe('done');
    expect(state.seen).toMatchObject({ count: manifest.shards.length, rows: ROWS, skipped: 0 });
    const pipeline = (await readJson<PosteriorDocument>(raw, state.resultKey!)).value;
    expect(pipeline.rows).toBe(ROWS);

    // The same data and settings through the local runner (8 threads): the same posterior.
    const localFiles = files.map(([key]) => path.join(dir, path.basename(key)));
    const local = (await fitLocal({ files: localFiles, config: CONFIG, outDir: path.join(dir, 'out'), workers: WORKERS })).posterior;
    expect(pipeline.components.length).toBe(local.components.length);
    expect(Math.abs(pipeline.elbo - local.elbo)).toBeLessThanOrEqual(1e-6 * Math.abs(local.elbo));
    pipeline.components.forEach((c, k) => {
      expect(c.weight).toBeCloseTo(local.components[k].weight, 6);
      c.coefficients.forEach((v, j) => expect(v).toBeCloseTo(local.components[k].coefficients[j], 4));
    });

    // The simulator's prediction of the same run's requests.
    const predicted = await simulate({ rows: ROWS, workers: WORKERS, params: PARAMS });
    console.log('requests measured', measured, 'predicted', predicted.requests);
    for (const key of ['s3Get', 's3Put', 's3List', 'sqs'] as const) {
      expect(Math.abs(predicted.requests[key] - measured[key]), `${key}: predicted ${predicted.requests[key]}, measured ${measured[key]}`).toBeLessThanOrEqual(0.1 * measured[key]);
    }
    // Its time includes the report the aggregator renders: its figures ahead, while the last
    // sweeps run, and at the end only the trace's parts.
    expect(predicted.aggregator.reportAheadSeconds).toBeGreaterThan(0.1);
    expect(predicted.aggregator.reportSeconds).toBeGreaterThan(0);
    expect(predicted.aggregator.reportSeconds).toBeLessThan(predicted.aggregator.reportAheadSeconds);
    expect(predicted.aggregator.reportSeconds + predicted.aggregator.reportAheadSeconds).toBeLessThan(predicted.aggregator.busySeconds);
    // Its timeline (--timeline): the planner's phases in order, every round's tasks one per shard
    // (batch sweeps), each round ended by the aggregator after its last task, the last at the wall.
    const { planner, rounds } = predicted.timeline;
    expect(planner.coldStartEnd).toBeLessThan(planner.sampling!);
    expect(planner.sampling!).toBeLessThan(planner.initializing!);
    expect(planner.initializing!).toBeLessThan(planner.end);
    expect(rounds.length).toBe(predicted.rounds.svi + predicted.rounds.batch);
    expect(rounds.reduce((n, r) => n + r.tasks.invocations, 0)).toBe(predicted.tasks);
    for (const r of rounds) {
      expect(r.tasks.start).toBeGreaterThanOrEqual(planner.end);
      expect(r.aggregator!.end).toBeGreaterThan(r.tasks.end);
      expect(r.tasks.cpu['local step']).toBeGreaterThan(0);
    }
    expect(rounds.at(-1)!.aggregator!.end).toBeCloseTo(predicted.wallSeconds, 6);
  });
});
