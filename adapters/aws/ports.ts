/**
 * The AWS side of the ports in one place: clients, the S3 store and the SQS queues (with large
 * payloads passed through the bucket), configured from explicit options or the Lambda environment.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { ClusterwiseError } from '../../lib/errors.js';
import type { ObjectStore, Queue } from '../../lib/pipeline/ports.js';
import { INTERMEDIATE_TAGS } from '../../lib/pipeline/protocol.js';
import { S3ObjectStore } from './s3-object-store.js';
import { SqsQueue } from './sqs-queue.js';

/**
 * A stack that cannot be used: missing, not deployed here, without the outputs the CLI needs, or a
 * function without the environment the stack gives it. Permanent until the deployment is fixed.
 */
export class StackLookupError extends ClusterwiseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StackLookupError';
  }
}

export interface AwsPortOptions {
  bucket: string;
  tasksQueueUrl: string;
  updatesQueueUrl: string;
  tasksDeadLetterUrl?: string;
  updatesDeadLetterUrl?: string;
  /** Ingest's on-failure destination (the stack's IngestFailures queue). */
  ingestFailuresUrl?: string;
  /** An S3/SQS-compatible endpoint (an emulator); path-style S3 addressing then. */
  endpoint?: string;
  region?: string;
}

export interface AwsPorts {
  s3: S3Client;
  sqs: SQSClient;
  store: ObjectStore;
  tasks: Queue;
  updates: Queue;
  deadLetters: { name: string; queue: Queue }[];
  ingestFailures?: Queue;
}

export function awsClients(options: { endpoint?: string; region?: string }) {
  const common = {
    ...(options.region ? { region: options.region } : {}),
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
  };
  return { s3: new S3Client({ ...common, ...(options.endpoint ? { forcePathStyle: true } : {}) }), sqs: new SQSClient(common) };
}

export function awsPorts(options: AwsPortOptions): AwsPorts {
  const { s3, sqs } = awsClients(options);
  const store = new S3ObjectStore({ client: s3, bucket: options.bucket });
  const queue = (queueUrl: string, name: string) => new SqsQueue({ client: sqs, queueUrl, name, store, payloadPrefix: 'runs/_payloads', payloadTags: { ...INTERMEDIATE_TAGS } });
  const deadLetters = [
    ...(options.tasksDeadLetterUrl ? [{ name: 'tasks', queue: queue(options.tasksDeadLetterUrl, 'tasks-dlq') }] : []),
    ...(options.updatesDeadLetterUrl ? [{ name: 'updates', queue: queue(options.updatesDeadLetterUrl, 'updates-dlq') }] : []),
  ];
  const ingestFailures = options.ingestFailuresUrl ? { ingestFailures: queue(options.ingestFailuresUrl, 'ingest-failures') } : {};
  return { s3, sqs, store, tasks: queue(options.tasksQueueUrl, 'tasks'), updates: queue(options.updatesQueueUrl, 'updates'), deadLetters, ...ingestFailures };
}

/** Ports from the environment the stack gives every function (infra/clusterwise-stack.ts). */
export function portsFromEnvironment(env: NodeJS.ProcessEnv = process.env): AwsPorts {
  const required = (name: string) => {
    const value = env[name];
    if (!value) throw new StackLookupError(`environment variable ${name} is not set (the stack sets it: infra/clusterwise.ts)`);
    return value;
  };
  return awsPorts({
    bucket: required('BUCKET_NAME'),
    tasksQueueUrl: required('TASKS_QUEUE_URL'),
    updatesQueueUrl: required('UPDATES_QUEUE_URL'),
    tasksDeadLetterUrl: env.TASKS_DLQ_URL,
    updatesDeadLetterUrl: env.UPDATES_DLQ_URL,
    ingestFailuresUrl: env.INGEST_FAILURES_URL,
    endpoint: env.CLUSTERWISE_ENDPOINT,
  });
}
