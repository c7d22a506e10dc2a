/**
 * In-process S3 + SQS emulator (fauxqs 1.9.2) for integration and end-to-end tests.
 *
 *   const emu = await startEmulator();            // own server on a free port, ~0.1 s
 *   const bucket = await createBucket(emu.s3, uniqueName('data'));
 *   const { queue, deadLetter } = await createQueueWithDeadLetter(emu.sqs, uniqueName('tasks'), {
 *     visibilityTimeoutSeconds: 1, maxReceiveCount: 2,
 *   });
 *   const store = new S3ObjectStore({ client: emu.s3, bucket });
 *   const tasks = new SqsQueue({ client: emu.sqs, queueUrl: queue.url, store });
 *   ...
 *   await emu.stop();                              // in afterAll
 *
 * Each test file should start its own emulator (vitest runs files in parallel processes) and
 * give its buckets and queues unique names if tests share one emulator.
 *
 * Client configuration the emulator needs (see clientConfig): the endpoint `http://127.0.0.1:<port>`,
 * any region (fauxqs reads it from the request signature; queues live per region), any
 * credentials (never checked), and for S3 `forcePathStyle: true` (the virtual-host style would
 * need `<bucket>.localhost` to resolve). Queue URLs look like
 * `http://sqs.us-east-1.localhost:<port>/000000000000/<name>`; the SQS client sends to its
 * configured endpoint, so that host never has to resolve.
 *
 * Node: fauxqs 1.9.2 runs on Node 20 (these suites pass on 20.20). One transitive package
 * (cookie@2, via light-my-request, used only by fastify.inject) declares node >= 22, and the AWS
 * SDK prints a NodeVersionSupportWarning on Node 20; both are harmless here.
 *
 * Conditional puts: fauxqs ignores If-Match / If-None-Match on PutObject, which the pipeline's
 * compare-and-swap and claims rely on. So by default the clients talk to the conditions proxy
 * (test/support/conditions-proxy.ts) in front of fauxqs, which answers them as S3 does (412,
 * 404 NoSuchKey, one winner among concurrent writers); `conditionalWrites: false` gives the bare
 * emulator, for the tests that show its gaps.
 *
 * What the emulator does not do like AWS is listed at the top of
 * test/contract/object-store.contract.ts; in short: no conditional puts (the proxy supplies
 * them), no S3 event notifications to SQS, FIFO receives return one message per group, no emoji
 * in SQS bodies, and ListObjectsV2 pages that lose keys when case or punctuation orders them
 * differently.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { startFauxqs, type FauxqsServer } from 'fauxqs';
import { randomBytes } from 'node:crypto';
import { startConditionsProxy } from './conditions-proxy.js';

export interface Emulator {
  /** Base URL for clients, e.g. `http://127.0.0.1:41234`: the conditions proxy's unless turned off. */
  readonly endpoint: string;
  /** Region the clients sign with. */
  readonly region: string;
  /** S3 client configured for the emulator (path-style). */
  readonly s3: S3Client;
  /** SQS client configured for the emulator. */
  readonly sqs: SQSClient;
  /** The fauxqs server, for its test helpers: inspectQueue, reset, purgeAll, spy (if enabled). */
  readonly server: FauxqsServer;
  /** Stops the server and closes both clients' sockets. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartEmulatorOptions {
  /** Region the clients sign with (and so the region of every queue). @default 'us-east-1' */
  region?: string;
  /** Enable fauxqs's message spy (`emulator.server.spy`). @default false */
  messageSpies?: boolean;
  /**
   * Put the conditions proxy in front, so conditional puts behave as on S3.
   * @default true
   */
  conditionalWrites?: boolean;
}

/** Client settings for an emulator at `endpoint` (spread into `new S3Client` / `new SQSClient`). */
export function clientConfig(endpoint: string, region = 'us-east-1') {
  return {
    endpoint,
    region,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1, // an emulator failure is a bug to see, not a throttle to retry
  };
}

/** Starts fauxqs in this process on a free port, with S3 and SQS clients pointed at it. */
export async function startEmulator(options: StartEmulatorOptions = {}): Promise<Emulator> {
  const region = options.region ?? 'us-east-1';
  const server = await startFauxqs({
    port: 0,
    host: 'localhost',
    logger: false,
    defaultRegion: region,
    messageSpies: options.messageSpies ?? false,
  });
  const proxy = (options.conditionalWrites ?? true) ? await startConditionsProxy(server.address) : undefined;
  const endpoint = proxy?.endpoint ?? server.address;
  const s3 = new S3Client({ ...clientConfig(endpoint, region), forcePathStyle: true });
  const sqs = new SQSClient(clientConfig(endpoint, region));
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    region,
    s3,
    sqs,
    server,
    stop() {
      stopped ??= (async () => {
        s3.destroy();
        sqs.destroy();
        await proxy?.stop();
        await server.stop();
      })();
      return stopped;
    },
  };
}

/**
 * A name usable for an S3 bucket and an SQS queue: lowercase letters, digits and '-', unique per
 * call. `prefix` should be short (buckets allow 63 characters, queues 80).
 */
export function uniqueName(prefix = 'test'): string {
  return `${prefix.toLowerCase().replace(/[^a-z0-9-]/g, '-')}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Creates a bucket (idempotent in fauxqs) and returns its name. */
export async function createBucket(s3: S3Client, name: string): Promise<string> {
  await s3.send(new CreateBucketCommand({ Bucket: name }));
  return name;
}

export interface CreateQueueOptions {
  /** FIFO queue; '.fifo' is appended to the name when missing. @default false */
  fifo?: boolean;
  /** FIFO only: deduplicate by body hash when no deduplication id is sent (like MemoryQueue). @default true */
  contentBasedDeduplication?: boolean;
  /** Queue VisibilityTimeout in seconds (0–43200). @default 30 (SQS default) */
  visibilityTimeoutSeconds?: number;
  /** Dead-letter queue by URL (its ARN is looked up). Requires maxReceiveCount. */
  deadLetterQueueUrl?: string;
  /** Dead-letter queue by ARN. Requires maxReceiveCount. */
  deadLetterQueueArn?: string;
  /** Deliveries before a message moves to the dead-letter queue. Requires a dead-letter queue. */
  maxReceiveCount?: number;
}

export interface CreatedQueue {
  /** Queue name as created (with '.fifo' for FIFO queues). */
  name: string;
  url: string;
  arn: string;
}

/** Creates an SQS queue through the SDK (so it works against real SQS too). */
export async function createQueue(sqs: SQSClient, name: string, options: CreateQueueOptions = {}): Promise<CreatedQueue> {
  const fifo = options.fifo ?? false;
  const queueName = fifo && !name.endsWith('.fifo') ? `${name}.fifo` : name;
  if (options.deadLetterQueueArn && options.deadLetterQueueUrl) {
    throw new RangeError(`createQueue(${name}): give deadLetterQueueUrl or deadLetterQueueArn, not both`);
  }
  const hasDlq = options.deadLetterQueueArn !== undefined || options.deadLetterQueueUrl !== undefined;
  if (hasDlq !== (options.maxReceiveCount !== undefined)) {
    throw new RangeError(`createQueue(${name}): a dead-letter queue and maxReceiveCount go together`);
  }
  const dlq = options.deadLetterQueueArn ?? (options.deadLetterQueueUrl ? await queueArn(sqs, options.deadLetterQueueUrl) : undefined);
  const attributes: Record<string, string> = {};
  if (fifo) {
    attributes.FifoQueue = 'true';
    attributes.ContentBasedDeduplication = String(options.contentBasedDeduplication ?? true);
  }
  if (options.visibilityTimeoutSeconds !== undefined) attributes.VisibilityTimeout = String(options.visibilityTimeoutSeconds);
  if (dlq !== undefined) {
    attributes.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: dlq, maxReceiveCount: String(options.maxReceiveCount) });
  }
  const out = await sqs.send(new CreateQueueCommand({ QueueName: queueName, Attributes: attributes }));
  if (!out.QueueUrl) throw new Error(`createQueue(${queueName}): no QueueUrl in the response`);
  return { name: queueName, url: out.QueueUrl, arn: await queueArn(sqs, out.QueueUrl) };
}

/**
 * Creates `<name>-dlq` and `<name>` redriving into it after maxReceiveCount deliveries (both FIFO
 * when `fifo`).
 */
export async function createQueueWithDeadLetter(
  sqs: SQSClient,
  name: string,
  options: Omit<CreateQueueOptions, 'deadLetterQueueUrl' | 'deadLetterQueueArn' | 'maxReceiveCount'> & { maxReceiveCount: number },
): Promise<{ queue: CreatedQueue; deadLetter: CreatedQueue }> {
  const base = name.replace(/\.fifo$/, '');
  const deadLetter = await createQueue(sqs, `${base}-dlq`, {
    fifo: options.fifo,
    contentBasedDeduplication: options.contentBasedDeduplication,
  });
  const queue = await createQueue(sqs, base, { ...options, deadLetterQueueArn: deadLetter.arn });
  return { queue, deadLetter };
}

async function queueArn(sqs: SQSClient, url: string): Promise<string> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new Error(`no QueueArn for ${url}`);
  return arn;
}
