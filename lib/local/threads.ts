/** The message shapes between the local runner (main thread) and its worker threads. */
import { availableParallelism } from 'node:os';
import type { ShardPlan } from '../pipeline/run.js';

/**
 * Below this many data bytes one thread does the work: starting a thread costs about 0.8 s of CPU
 * (tfjs, its kernel and our modules loaded again), more than it saves there. Measured for
 * `predict` (one pass) and `fit` (a few passes; 100k rows × 10 columns, 9 MB).
 */
const THREADS_FROM_BYTES = 16 * 1024 * 1024;

/** The most worker threads a fit or predict takes: more only add memory (each holds its shards and a kernel). */
export const MAX_THREADS = 2 * availableParallelism();

/** Worker threads for `dataBytes` of CSV when the user did not say: one per core, none for small data. */
export function defaultThreads(dataBytes: number): number {
  return dataBytes < THREADS_FROM_BYTES ? 0 : availableParallelism();
}

export interface WorkerInit {
  storeRoot: string;
  dataRoot: string;
  backend: string;
  maxReceiveCount: number;
  tasksQueueName: string;
}

export type ToWorker =
  | { type: 'task'; message: { id: string; body: string; receipt: string; receiveCount: number } }
  /** Read and parse these shards of a run being planned (WorkerCache.prefetch). */
  | { type: 'prefetch'; planned: ShardPlan; shards: number[] };

export type FromWorker =
  | { type: 'ready'; kernel: string }
  | { type: 'send'; body: string; groupId?: string; deduplicationId?: string }
  | { type: 'done'; receipt: string; error?: string };

/** Object keys for files on this machine: the absolute path without its leading separator. */
export function localDataKey(absolutePath: string): string {
  return absolutePath.replace(/^\/+/, '');
}

/**
 * A worker thread running the module `entry` (a URL of a compiled .js file next to the caller).
 * When the caller runs from TypeScript source (tests under vitest), the thread gets a small
 * bootstrap that registers tsx first and then imports the .ts source of `entry`.
 */
export async function spawnModuleWorker(
  entry: URL,
  workerData: unknown,
  resourceLimits?: import('node:worker_threads').ResourceLimits,
): Promise<import('node:worker_threads').Worker> {
  const { Worker } = await import('node:worker_threads');
  if (!entry.href.endsWith('.ts')) return new Worker(entry, { workerData, resourceLimits });
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry.href)});`;
  return new Worker(bootstrap, { eval: true, workerData, resourceLimits });
}
