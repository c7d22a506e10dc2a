/**
 * The serverless stack on the emulator, for the end-to-end tests: the bucket and the queues the CDK
 * stack makes, its outputs answered by a CloudFormation stub in front of the emulator (so the CLI
 * finds the stack as it does on AWS), the Lambda handlers loaded with the environment the stack
 * gives them, and pollers standing in for the SQS event source mappings
 * (test/support/lambda-poller.ts).
 *
 * What the emulator cannot show, and so these tests cannot either (see the comment at the top of
 * test/contract/object-store.contract.ts): conditional puts (If-Match / If-None-Match are
 * ignored: the aggregator race is tested against MemoryObjectStore in faults.e2e.test.ts), S3
 * event notifications (the ingest handler is given hand-built ObjectCreated events), Lambda
 * event source mappings (the pollers), and FIFO receives of several messages of one group (the
 * emulator returns one per group, so the aggregator's batches of 10 hold one record each).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { PurgeQueueCommand } from '@aws-sdk/client-sqs';
import type { Context, S3Event } from 'aws-lambda';
import { afterAll, beforeAll, expect, vi } from 'vitest';
import { S3ObjectStore } from '../../adapters/aws/s3-object-store.js';
import type { ActiveRun } from '../../lib/pipeline/ingest.js';
import { STACK_OUTPUTS, type StackOutputName } from '../../infra/outputs.js';
import { parseConfig } from '../../lib/config.js';
import { fitLocal } from '../../lib/local/runner.js';
import type { PosteriorDocument } from '../../lib/model/summary.js';
import { keys } from '../../lib/pipeline/protocol.js';
import { readJsonIfExists, type Manifest, type RunState } from '../../lib/pipeline/run.js';
import { tempDir } from '../support/cli.js';
import { createBucket, createQueue, startEmulator, type CreatedQueue, type Emulator } from '../support/emulator.js';
import { LambdaPoller, pollUntil, type LambdaPollerOptions, type SqsHandler } from '../support/lambda-poller.js';

export const STACK = 'Clusterwise';
export const MAX_RECEIVE_COUNT = 3;
/** Concurrent worker invocations (the worker event source's maximum concurrency). */
export const WORKER_POLLERS = 4;

export interface EmulatedStack {
  /**
   * The emulator, except that its `endpoint` is the stub in front of it, which also answers
   * CloudFormation DescribeStacks for STACK: every client given that endpoint (the CLI's
   * `--endpoint`, the handlers' CLUSTERWISE_ENDPOINT) reaches S3, SQS and the stack's outputs.
   */
  emulator: Emulator;
  bucket: string;
  store: S3ObjectStore;
  queues: { tasks: CreatedQueue; tasksDeadLetter: CreatedQueue; updates: CreatedQueue; updatesDeadLetter: CreatedQueue; ingestFailures: CreatedQueue };
  /** Every poller made by eventSources, so that stop() can end any a failed test left running. */
  pollers: LambdaPoller[];
  /** Stops the pollers, then the emulator. */
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Visibility timeout of the tasks queue: how long a crashed or failed task waits before its retry. */
  tasksVisibilitySeconds: number;
  /** Visibility timeout of the updates queue. */
  updatesVisibilitySeconds: number;
}

/** Starts the emulator and creates what `cdk deploy` creates that the emulator can hold. */
export async function startStack(options: StackOptions): Promise<EmulatedStack> {
  const emulator = await startEmulator();
  // CloudFormation names the real stack's queues; any names do here, the CLI finds them by output.
  const names = {
    tasks: `${STACK}-tasks`,
    tasksDeadLetter: `${STACK}-tasks-dlq`,
    updates: `${STACK}-updates.fifo`,
    updatesDeadLetter: `${STACK}-updates-dlq.fifo`,
    ingestFailures: `${STACK}-ingest-failures`,
  };
  const bucket = await createBucket(emulator.s3, 'clusterwise-e2e');
  // As infra/constructs/work-queue.ts: standard tasks queue, FIFO updates queue without
  // content-based deduplication (senders give ids), each with a dead-letter queue after 3 receives.
  const tasksDeadLetter = await createQueue(emulator.sqs, names.tasksDeadLetter);
  const tasks = await createQueue(emulator.sqs, names.tasks, {
    visibilityTimeoutSeconds: options.tasksVisibilitySeconds,
    deadLetterQueueArn: tasksDeadLetter.arn,
    maxReceiveCount: MAX_RECEIVE_COUNT,
  });
  const updatesDeadLetter = await createQueue(emulator.sqs, names.updatesDeadLetter, { fifo: true, contentBasedDeduplication: false });
  const updates = await createQueue(emulator.sqs, names.updates, {
    fifo: true,
    contentBasedDeduplication: false,
    visibilityTimeoutSeconds: options.updatesVisibilitySeconds,
    deadLetterQueueArn: updatesDeadLetter.arn,
    maxReceiveCount: MAX_RECEIVE_COUNT,
  });
  const ingestFailures = await createQueue(emulator.sqs, names.ingestFailures);
  const store = new S3ObjectStore({ client: emulator.s3, bucket });
  const pollers: LambdaPoller[] = [];
  const outputs: Record<StackOutputName, string> = {
    bucket,
    tasksQueueUrl: tasks.url,
    updatesQueueUrl: updates.url,
    tasksDeadLetterUrl: tasksDeadLetter.url,
    updatesDeadLetterUrl: updatesDeadLetter.url,
    ingestFailuresUrl: ingestFailures.url,
  };
  const stub = await startCloudFormationStub(emulator.endpoint, STACK, outputs);
  return {
    emulator: { ...emulator, endpoint: stub.endpoint },
    bucket,
    store,
    queues: { tasks, tasksDeadLetter, updates, updatesDeadLetter, ingestFailures },
    pollers,
    stop: async () => {
      await Promise.all(pollers.map((p) => p.stop()));
      await stub.stop();
      await emulator.stop();
    },
  };
}

/**
 * An HTTP endpoint in front of the emulator that answers CloudFormation DescribeStacks (AWS query
 * protocol, recognized by the service in the request's signature) with the stack's outputs, as
 * `cdk deploy` leaves them, and passes every other request (S3, SQS) through to the emulator.
 */
async function startCloudFormationStub(upstream: string, stackName: string, outputs: Record<StackOutputName, string>) {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true });
  const xml = (text: string) => text.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
  const describeStacks = (body: string, res: ServerResponse) => {
    const params = new URLSearchParams(body);
    if (params.get('Action') !== 'DescribeStacks' || params.get('StackName') !== stackName) {
      res.writeHead(400, { 'content-type': 'text/xml' }).end(
        `<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id ${xml(params.get('StackName') ?? '')} does not exist</Message></Error><RequestId>stub</RequestId></ErrorResponse>`,
      );
      return;
    }
    const members = (Object.keys(STACK_OUTPUTS) as StackOutputName[])
      .map((name) => `<member><OutputKey>${STACK_OUTPUTS[name]}</OutputKey><OutputValue>${xml(outputs[name])}</OutputValue></member>`)
      .join('');
    res.writeHead(200, { 'content-type': 'text/xml' }).end(
      `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member>` +
        `<StackName>${xml(stackName)}</StackName><StackId>arn:aws:cloudformation:us-east-1:000000000000:stack/${xml(stackName)}/stub</StackId>` +
        `<CreationTime>2026-01-01T00:00:00Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus><Outputs>${members}</Outputs>` +
        `</member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></DescribeStacksResponse>`,
    );
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (/\/cloudformation\/aws4_request/.test(req.headers.authorization ?? '')) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => describeStacks(Buffer.concat(chunks).toString('utf8'), res));
      return;
    }
    const forward = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', (error) => res.destroy(error));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The environment infra/clusterwise-stack.ts gives every function, pointed at the emulator. */
export function setStackEnvironment(stack: EmulatedStack): void {
  Object.assign(process.env, {
    BUCKET_NAME: stack.bucket,
    TASKS_QUEUE_URL: stack.queues.tasks.url,
    UPDATES_QUEUE_URL: stack.queues.updates.url,
    TASKS_DLQ_URL: stack.queues.tasksDeadLetter.url,
    UPDATES_DLQ_URL: stack.queues.updatesDeadLetter.url,
    INGEST_FAILURES_URL: stack.queues.ingestFailures.url,
    CLUSTERWISE_ENDPOINT: stack.emulator.endpoint,
    AWS_REGION: stack.emulator.region,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    // The worker event source's maximum concurrency (the pollers run 4); sizes the tasks in flight.
    WORKER_CONCURRENCY: String(WORKER_POLLERS),
    // Powertools' Logger writes to the global console in dev mode, where captureLogs sees it.
    POWERTOOLS_DEV: 'true',
  });
}

export interface Handlers {
  ingest: (event: S3Event, context: Context) => Promise<Record<string, unknown>>;
  worker: SqsHandler;
  aggregator: SqsHandler;
}

/**
 * The real Lambda handlers. They build their ports from the environment when their module loads,
 * so the environment is set first, and fresh modules are loaded.
 */
export async function loadHandlers(stack: EmulatedStack): Promise<Handlers> {
  setStackEnvironment(stack);
  vi.resetModules();
  const [ingest, worker, aggregator] = await Promise.all([
    import('../../functions/ingest.js'),
    import('../../functions/worker.js'),
    import('../../functions/aggregator.js'),
  ]);
  return { ingest: ingest.handler, worker: worker.handler, aggregator: aggregator.handler };
}

/**
 * Pollers as the stack's event source mappings: the worker with batch size 1 and 4 concurrent
 * invocations, the aggregator with batch size 10 (the FIFO maximum) and one invocation at a time.
 */
export function eventSources(stack: EmulatedStack, handlers: Handlers, options: { workers?: Partial<LambdaPollerOptions>; aggregator?: Partial<LambdaPollerOptions> } = {}) {
  const { sqs, region } = stack.emulator;
  const workers = new LambdaPoller({
    sqs,
    region,
    queueUrl: stack.queues.tasks.url,
    queueArn: stack.queues.tasks.arn,
    handler: handlers.worker,
    functionName: 'Clusterwise-Worker',
    batchSize: 1,
    concurrency: WORKER_POLLERS,
    ...options.workers,
  });
  const aggregator = new LambdaPoller({
    sqs,
    region,
    queueUrl: stack.queues.updates.url,
    queueArn: stack.queues.updates.arn,
    handler: handlers.aggregator,
    functionName: 'Clusterwise-Aggregator',
    batchSize: 10,
    concurrency: 1,
    ...options.aggregator,
  });
  stack.pollers.push(workers, aggregator);
  return { workers, aggregator };
}

/** A Lambda context for a direct invocation (ingest). */
export function lambdaContext(functionName: string): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: `req-${Date.now().toString(36)}`,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => 60_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** The ObjectCreated event S3 would send for these objects (one record each, keys URL-encoded). */
export function objectCreatedEvent(bucket: string, objects: { key: string; size: number; etag?: string }[]): S3Event {
  const now = new Date().toISOString();
  return {
    Records: objects.map((o, i) => ({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: now,
      eventName: 'ObjectCreated:Put',
      userIdentity: { principalId: 'AWS:TEST' },
      requestParameters: { sourceIPAddress: '127.0.0.1' },
      responseElements: { 'x-amz-request-id': `req${i}`, 'x-amz-id-2': `id${i}` },
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'ingest',
        bucket: { name: bucket, ownerIdentity: { principalId: 'TEST' }, arn: `arn:aws:s3:::${bucket}` },
        object: {
          key: encodeURIComponent(o.key).replace(/%2F/g, '/').replace(/%20/g, '+'),
          size: o.size,
          eTag: (o.etag ?? '').replace(/"/g, ''),
          sequencer: (Date.now() * 100 + i).toString(16).toUpperCase(),
        },
      },
    })),
  };
}

/** Uploads objects with PutObject (as a user would) and returns the ObjectCreated event of the CSVs. */
export async function upload(stack: EmulatedStack, objects: { key: string; body: string }[]): Promise<S3Event> {
  const created: { key: string; size: number; etag?: string }[] = [];
  for (const o of objects) {
    const out = await stack.emulator.s3.send(new PutObjectCommand({ Bucket: stack.bucket, Key: o.key, Body: o.body }));
    if (o.key.endsWith('.csv')) created.push({ key: o.key, size: Buffer.byteLength(o.body), etag: out.ETag });
  }
  return objectCreatedEvent(stack.bucket, created);
}

/** The forum example's header and data lines. */
export function forumLines(): { header: string; rows: string[] } {
  const [header, ...rows] = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
  return { header, rows };
}

/** The rows cut into `parts` CSV texts of consecutive rows, each with the header. */
export function splitCsv(header: string, rows: string[], parts: number): string[] {
  const size = Math.ceil(rows.length / parts);
  return Array.from({ length: parts }, (_, i) => [header, ...rows.slice(i * size, (i + 1) * size)].join('\n') + '\n');
}

/** A run's posterior.json agrees with the local fit of the same parts: rows, ELBO, and every component's weight, coefficients, intercept and mean. */
export function expectAgreesWithLocal(remote: PosteriorDocument, local: PosteriorDocument): void {
  expect(remote.rows).toBe(local.rows);
  expect(Math.abs(remote.elbo - local.elbo)).toBeLessThanOrEqual(1e-6 * Math.abs(local.elbo));
  expect(remote.components.length).toBe(local.components.length);
  remote.components.forEach((c, k) => {
    expect(c.weight).toBeCloseTo(local.components[k].weight, 5);
    c.coefficients.forEach((v, j) => expect(v).toBeCloseTo(local.components[k].coefficients[j], 4));
    expect(c.intercept).toBeCloseTo(local.components[k].intercept, 4);
    c.mean?.forEach((v, j) => expect(v).toBeCloseTo(local.components[k].mean![j], 4));
  });
}

export function partKey(dataset: string, i: number): string {
  return `${keys.dataPrefix(dataset)}part-${String(i).padStart(2, '0')}.csv`;
}

export async function runState(stack: EmulatedStack, dataset: string, runId: string): Promise<RunState | undefined> {
  return (await readJsonIfExists<RunState>(stack.store, keys.state(dataset, runId)))?.value;
}

/** True once the run's state says done or failed. */
export function runEnded(stack: EmulatedStack, dataset: string, runId: string): () => Promise<boolean> {
  return async () => {
    const state = await runState(stack, dataset, runId);
    return state !== undefined && state.status !== 'running';
  };
}

export async function readObject<T>(stack: EmulatedStack, key: string): Promise<T> {
  const found = await readJsonIfExists<T>(stack.store, key);
  if (!found) throw new Error(`s3://${stack.bucket}/${key} is missing`);
  return found.value;
}

/** Every queue's messages gone (visible, delayed and in flight): a clean slate between tests. */
export async function purgeQueues(stack: EmulatedStack): Promise<void> {
  for (const q of Object.values(stack.queues)) await stack.emulator.sqs.send(new PurgeQueueCommand({ QueueUrl: q.url }));
}

/** Messages in a queue, visible or in flight (exact on the emulator). */
export function queueDepth(stack: EmulatedStack, queue: CreatedQueue): number {
  const q = stack.emulator.server.inspectQueue(queue.name);
  if (!q) throw new Error(`no queue ${queue.name}`);
  return q.messages.ready.length + q.messages.delayed.length + q.messages.inflight.length;
}

/** Bodies of the messages in a queue (visible, delayed and in flight), without receiving them. */
export function queueBodies(stack: EmulatedStack, queue: CreatedQueue): string[] {
  const q = stack.emulator.server.inspectQueue(queue.name);
  if (!q) throw new Error(`no queue ${queue.name}`);
  return [...q.messages.ready, ...q.messages.delayed, ...q.messages.inflight.map((m) => m.message)].map((m) => m.body);
}

export interface LogEntry {
  level: string;
  message: string;
  [field: string]: unknown;
}

/**
 * Collects the handlers' structured log lines (Powertools' Logger in dev mode writes JSON to the
 * global console) and keeps them off the test output. `restore` puts the console back.
 */
export function captureLogs() {
  const entries: LogEntry[] = [];
  const spies = (['info', 'warn', 'error', 'debug', 'log'] as const).map((method) =>
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      const text = args.map(String).join(' ');
      try {
        const parsed = JSON.parse(text) as LogEntry;
        if (parsed && typeof parsed === 'object' && 'message' in parsed) {
          entries.push(parsed);
          return;
        }
      } catch {
        // not a log line
      }
      entries.push({ level: method.toUpperCase(), message: text });
    }),
  );
  return {
    entries,
    restore: () => spies.forEach((s) => s.mockRestore()),
  };
}

/**
 * The emulated stack of a test file: started, with the handlers loaded and their logs captured,
 * before the file's tests; stopped after them. Its fields are set once the tests run.
 */
export function useEmulatedStack(options: StackOptions = { tasksVisibilitySeconds: 10, updatesVisibilitySeconds: 10 }) {
  const env = {} as { stack: EmulatedStack; handlers: Handlers; logs: ReturnType<typeof captureLogs> };
  beforeAll(async () => {
    env.stack = await startStack(options);
    env.logs = captureLogs();
    env.handlers = await loadHandlers(env.stack);
  });
  afterAll(async () => {
    env.logs?.restore();
    await env.stack?.stop();
  });
  return env;
}

/**
 * Uploads datasets/<dataset>/model.json and the CSV texts as part-NN.csv, then hands ingest the
 * ObjectCreated event of the last CSV (as if only that upload notified; the coalescing of several
 * notifications is tested on its own). Returns the id of the run ingest started.
 */
export async function startRun(stack: EmulatedStack, handlers: Handlers, dataset: string, model: unknown, csvs: string[]): Promise<string> {
  await upload(stack, [{ key: keys.modelConfig(dataset), body: JSON.stringify(model) }]);
  const event = await upload(stack, csvs.map((body, i) => ({ key: partKey(dataset, i), body })));
  const last = event.Records[event.Records.length - 1];
  const outcomes = await handlers.ingest({ Records: [last] }, lambdaContext('Clusterwise-Ingest'));
  const outcome = outcomes[partKey(dataset, csvs.length - 1)] as { started?: string } | undefined;
  if (!outcome?.started) throw new Error(`ingest did not start a run: ${JSON.stringify(outcomes)}`);
  return outcome.started;
}

/** Whether the dataset is free: its active-run marker (never deleted) says the run ended, or there is none. */
export async function datasetReleased(stack: EmulatedStack, dataset: string): Promise<boolean> {
  const marker = await readJsonIfExists<ActiveRun>(stack.store, keys.activeRun(dataset));
  return !marker || marker.value.ended === true;
}

/** Ids of the runs of a dataset that have a state, oldest first. */
export async function runsOf(stack: EmulatedStack, dataset: string): Promise<string[]> {
  const states = await stack.store.list(`runs/${dataset}/`);
  return states.filter((o) => o.key.endsWith('/state.json')).map((o) => o.key.split('/')[2]).sort();
}

/** `clusterwise status <dataset>` against the emulated stack, in this process: exit code and what it printed. */
export async function statusCommand(stack: EmulatedStack, dataset: string, logs: ReturnType<typeof captureLogs>) {
  const { main } = await import('../../cli/main.js');
  const before = logs.entries.length;
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'clusterwise', 'status', dataset, '--bucket', stack.bucket, '--stack', STACK, '--endpoint', stack.emulator.endpoint]);
    const printed = logs.entries.slice(before).filter((e) => e.level === 'LOG').map((e) => e.message).join('\n');
    return { code, printed };
  } finally {
    // main() sets process.exitCode for a failed run; it must not become this test process's.
    process.exitCode = saved;
  }
}

/**
 * The same CSV parts fitted on this machine with `model` (files part-00.csv … in a temporary
 * folder): the local fit a stack run is compared with.
 */
export async function fitPartsLocally(parts: string[], model: unknown, prefix: string): Promise<PosteriorDocument> {
  const dir = tempDir(prefix);
  const files = parts.map((body, i) => {
    const file = path.join(dir, 'data', `part-${String(i).padStart(2, '0')}.csv`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, body);
    return file;
  });
  return (await fitLocal({ files, config: parseConfig(model), outDir: path.join(dir, 'out'), workers: 0 })).posterior;
}

/**
 * A run of `model` over the CSV `parts` on the stack of `env`, polled to its end, which must be
 * clean: done, no failure, every shard seen once, `rows` rows counted, no handler error. Returns
 * its manifest and posterior.json.
 */
export async function runCleanly(env: { stack: EmulatedStack; handlers: Handlers }, dataset: string, model: unknown, parts: string[], rows: number) {
  const runId = await startRun(env.stack, env.handlers, dataset, model, parts);
  const manifest = await readObject<Manifest>(env.stack, keys.manifest(dataset, runId));
  const { workers, aggregator } = eventSources(env.stack, env.handlers);
  await pollUntil([workers, aggregator], runEnded(env.stack, dataset, runId), { timeoutMs: 150_000, description: `run ${runId} ended` });
  const state = await readObject<RunState>(env.stack, keys.state(dataset, runId));
  expect(state.failure).toBeUndefined();
  expect(state.status).toBe('done');
  expect(state.seen.count).toBe(manifest.shards.length);
  expect(state.totalRows).toBe(rows);
  expect(workers.handlerErrors).toEqual([]);
  expect(aggregator.handlerErrors).toEqual([]);
  return { manifest, remote: await readObject<PosteriorDocument>(env.stack, keys.result(dataset, runId, 'posterior.json')) };
}
