/**
 * What every handler shares: the ports from the environment, a structured logger, the kernel,
 * and the conversion of an SQS record to the port's QueueMessage. Created once per container.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { SQSRecord } from 'aws-lambda';
import { portsFromEnvironment } from '../adapters/aws/ports.js';
import { loadKernel } from '../lib/kernel/backend.js';
import type { Kernel } from '../lib/kernel/types.js';
import { resolvePayload } from '../lib/pipeline/large-payloads.js';
import type { QueueMessage } from '../lib/pipeline/ports.js';
import type { Log, RoleContext } from '../lib/pipeline/run.js';

/** Deliveries before SQS moves a message to the dead-letter queue (the stack's redrive policy). */
export const MAX_RECEIVE_COUNT = 3;

export function createLogger(): Logger {
  return new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'clusterwise' });
}

/** The Powertools logger as the roles' Log: structured JSON, fields merged into each entry. */
export function asLog(logger: Logger): Log {
  return {
    info: (message, fields) => logger.info(message, { ...fields }),
    warn: (message, fields) => logger.warn(message, { ...fields }),
    error: (message, fields) => logger.error(message, { ...fields }),
  };
}

export function roleContext(logger: Logger): RoleContext {
  const ports = portsFromEnvironment();
  const concurrency = Number(process.env.WORKER_CONCURRENCY);
  const deadLetter = (name: string) => ports.deadLetters.find((d) => d.name === name)?.queue;
  return {
    store: ports.store,
    tasks: ports.tasks,
    updates: ports.updates,
    // A message that fails for good goes here at once (lib/pipeline/failures.ts).
    deadLetter: { tasks: deadLetter('tasks'), updates: deadLetter('updates'), uploads: ports.ingestFailures },
    log: asLog(logger),
    // Idle workers store the shards' binary copies while the planner initializes (planner.ts).
    announceShards: true,
    // With provisioned pollers the whole concurrency is there at once: start the containers before the sample.
    wakeWorkers: process.env.WORKER_SCALING === 'provisioned',
    ...(concurrency > 0 ? { workerConcurrency: concurrency } : {}),
  };
}

let kernel: Promise<Kernel> | undefined;
/**
 * The fastest kernel this container can load (wasm next to the bundle on Lambda). Handlers pass
 * it on still loading: planning and a prefetch go on while it compiles, and what needs it awaits
 * it (a failure is reported there, so it is marked handled here).
 */
export function containerKernel(): Promise<Kernel> {
  if (!kernel) {
    kernel = loadKernel('auto');
    kernel.catch(() => {});
  }
  return kernel;
}

/** An SQS record as a port message, with a large payload fetched from the bucket. */
export async function toQueueMessage(record: SQSRecord, ctx: RoleContext): Promise<QueueMessage> {
  return {
    id: record.messageId,
    body: await resolvePayload(record.body, ctx.store),
    receipt: record.receiptHandle,
    receiveCount: Number(record.attributes.ApproximateReceiveCount ?? '1'),
  };
}
