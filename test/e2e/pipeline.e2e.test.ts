/**
 * End-to-end: the serverless pipeline on the emulator (issue "Serverless pipeline on AWS").
 *
 * The real Lambda handlers (functions/*.ts) run against S3 and SQS served by fauxqs: an upload
 * event starts a run through ingest; four worker pollers and one aggregator poller deliver the
 * queues' messages as Lambda's event source mappings would (test/support/lambda-poller.ts) until
 * the run's state says done; then the results are checked against a local fit of the same data,
 * and `clusterwise status` is asked about the run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { parseConfig } from '../../lib/config.js';
import { fitLocal, type LocalFitResult } from '../../lib/local/runner.js';
import type { ComponentSummary, PosteriorDocument } from '../../lib/model/summary.js';
import { keys } from '../../lib/pipeline/protocol.js';
import type { Manifest, RunState } from '../../lib/pipeline/run.js';
import { tempDir } from '../support/cli.js';
import { pollUntil } from '../support/lambda-poller.js';
import {
  captureLogs,
  eventSources,
  forumLines,
  lambdaContext,
  loadHandlers,
  partKey,
  queueDepth,
  readObject,
  runEnded,
  splitCsv,
  startStack,
  STACK,
  upload,
  type EmulatedStack,
  type Handlers,
} from './stack.js';

const DATASET = 'forum';
const PARTS = 25; // 40 rows each: one shard per object (the planner's shards are at least 4 KiB)

/**
 * The model.json of the run, and the config of the local fit it is compared with.
 *
 * Why the comparison can be tight: SVI steps depend on the order results arrive in, which differs
 * between four concurrent Lambda pollers and the local runner's inline worker, so the two runs
 * leave the SVI epoch at different points. The SVI epoch still runs (it is the path under test);
 * the batch sweeps after it polish both to the same fixed point of batch VB (from the same
 * initialization: the planner's k-means++ with the same seed on the same sample). The tolerance
 * is tight, but not below float32 noise: the kernel sums in float32, and on the emulator the
 * summation order of each sweep changes with arrival order, so a tolerance of 1e-9 is never met
 * (measured: still sweeping after 70 sweeps), while 1e-7 stops both runs within a few sweeps,
 * agreeing to about five digits.
 */
const MODEL = {
  target: 'y',
  seed: 7,
  schedule: { shardRows: 40, sviEpochs: 1, tolerance: 1e-7, maxSweeps: 50 },
};

let stack: EmulatedStack;
let handlers: Handlers;
let logs: ReturnType<typeof captureLogs>;

beforeAll(async () => {
  stack = await startStack({ tasksVisibilitySeconds: 10, updatesVisibilitySeconds: 10 });
  logs = captureLogs();
  handlers = await loadHandlers(stack);
});

afterAll(async () => {
  logs?.restore();
  await stack?.stop();
});

/** For each component of `a`, the component of `b` with the nearest mean. */
function matchByMean(a: ComponentSummary[], b: ComponentSummary[]): [ComponentSummary, ComponentSummary][] {
  const d = (x: number[], y: number[]) => x.reduce((s, v, i) => s + (v - y[i]) ** 2, 0);
  return a.map((c) => [c, b.reduce((best, o) => (d(c.mean!, o.mean!) < d(c.mean!, best.mean!) ? o : best))]);
}

/** |a − b| within `rel` of the larger magnitude (at least 1, so values near 0 compare absolutely). */
function expectClose(a: number, b: number, rel: number, what: string) {
  const scale = Math.max(1, Math.abs(a), Math.abs(b));
  expect(Math.abs(a - b) / scale, `${what}: ${a} vs ${b}`).toBeLessThanOrEqual(rel);
  process.stderr.write(`DIFF ${what} ${(Math.abs(a - b) / scale).toExponential(2)}\n`);
}

describe('serverless pipeline on the emulator', () => {
  let runId: string;
  let local: LocalFitResult;
  let elapsed: number;

  it('an upload starts a run that the worker and aggregator functions carry to the end', async () => {
    const { header, rows } = forumLines();
    expect(rows).toHaveLength(1000);
    const parts = splitCsv(header, rows, PARTS);
    await upload(stack, [{ key: keys.modelConfig(DATASET), body: JSON.stringify(MODEL) }]);
    const event = await upload(
      stack,
      parts.map((body, i) => ({ key: partKey(DATASET, i), body })),
    );
    // On AWS each of the 25 uploads notifies ingest, and the 24 after the first coalesce into a
    // pending refit (faults.e2e.test.ts tests that); here the last upload's event starts the run.
    const lastUpload = { Records: event.Records.slice(-1) };
    const outcomes = await handlers.ingest(lastUpload, lambdaContext('Clusterwise-Ingest'));
    const outcome = outcomes[partKey(DATASET, PARTS - 1)] as { started: string };
    expect(outcome).toHaveProperty('started');
    runId = outcome.started;

    const manifest = await readObject<Manifest>(stack, keys.manifest(DATASET, runId));
    expect(manifest.shards.length).toBeGreaterThanOrEqual(20);
    expect(manifest.files).toHaveLength(PARTS);

    const { workers, aggregator } = eventSources(stack, handlers);
    const t0 = Date.now();
    await pollUntil([workers, aggregator], runEnded(stack, DATASET, runId), { timeoutMs: 90_000, description: `run ${runId} ended` });
    elapsed = Date.now() - t0;

    const state = await readObject<RunState>(stack, keys.state(DATASET, runId));
    expect(state.failure).toBeUndefined();
    expect(state.status).toBe('done');
    expect(state.converged).toBe(true);
    expect(workers.handlerErrors).toEqual([]);
    expect(aggregator.handlerErrors).toEqual([]);
    expect(workers.deliveries.filter((d) => d.outcome !== 'deleted')).toEqual([]);
    expect(aggregator.deliveries.filter((d) => d.outcome !== 'deleted')).toEqual([]);
    // Every task was applied once: one SVI epoch and the sweeps, each over every shard.
    expect(new Set(state.applied).size).toBe(state.applied.length);
    expect(state.applied.filter((t) => t.startsWith('svi-'))).toHaveLength(manifest.shards.length);
    process.stderr.write(`run took ${elapsed} ms, ${state.applied.length} tasks, ${workers.invocations} worker invocations\n`);
  });

  it('writes the result and points models/<name>/latest.json at it', async () => {
    const resultKey = keys.result(DATASET, runId, 'posterior.json');
    const posterior = await readObject<PosteriorDocument & { skipped: unknown[] }>(stack, resultKey);
    expect(posterior.format).toBe('clusterwise/posterior@1');
    expect(posterior.runId).toBe(runId);
    expect(posterior.rows).toBe(1000);
    expect(posterior.skippedRows).toBe(0);
    expect(posterior.skipped).toEqual([]);
    expect(await stack.store.head(keys.result(DATASET, runId, 'report.html'))).toBeDefined();
    const latest = await readObject<{ runId: string; posterior: string }>(stack, keys.latestModel(DATASET));
    expect(latest).toMatchObject({ runId, posterior: resultKey });
    // The run released the dataset and left nothing behind in the queues.
    expect(await stack.store.head(keys.activeRun(DATASET))).toBeUndefined();
    for (const q of Object.values(stack.queues)) expect(queueDepth(stack, q), q.name).toBe(0);
  });

  it('agrees with the local fit of the same data and configuration', async () => {
    const dir = tempDir('clusterwise-e2e-');
    const { header, rows } = forumLines();
    const files = splitCsv(header, rows, PARTS).map((body, i) => {
      const file = path.join(dir, 'data', `part-${String(i).padStart(2, '0')}.csv`);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, body);
      return file;
    });
    local = await fitLocal({ files, config: parseConfig(MODEL), outDir: path.join(dir, 'out'), workers: 0 });
    const remote = await readObject<PosteriorDocument>(stack, keys.result(DATASET, runId, 'posterior.json'));
    expect(remote.rows).toBe(local.posterior.rows);
    // The four clusters of the example, and no other component of any weight, on both sides.
    const heavy = (p: PosteriorDocument) => p.components.filter((c) => c.weight > 0.01);
    expect(heavy(remote)).toHaveLength(4);
    expect(heavy(local.posterior)).toHaveLength(4);
    for (const [r, l] of matchByMean(heavy(remote), heavy(local.posterior))) {
      expectClose(r.weight, l.weight, 1e-2, 'weight');
      r.mean!.forEach((m, i) => expectClose(m, l.mean![i], 1e-2, `mean ${i}`));
      r.coefficients.forEach((b, i) => expectClose(b, l.coefficients[i], 1e-2, `coefficient ${i}`));
      expectClose(r.intercept, l.intercept, 1e-2, 'intercept');
    }
    expectClose(remote.elbo, local.posterior.elbo, 1e-3, 'ELBO');
  });

  it('`clusterwise status` reports the run done with its row count', async () => {
    const before = logs.entries.length;
    process.exitCode = undefined;
    const code = await main(['node', 'clusterwise', 'status', DATASET, '--bucket', stack.bucket, '--stack', STACK, '--endpoint', stack.emulator.endpoint]);
    process.exitCode = undefined;
    const printed = logs.entries.slice(before).filter((e) => e.level === 'LOG').map((e) => e.message).join('\n');
    expect(code).toBe(0);
    expect(printed).toContain(`run ${runId}: done`);
    expect(printed).toContain('1000 rows, 0 skipped');
    expect(printed).toContain(`result: s3://${stack.bucket}/${keys.result(DATASET, runId, 'posterior.json')}`);
    expect(printed).toContain('dead letters (tasks): 0');
    expect(printed).toContain('dead letters (updates): 0');
  });
});
