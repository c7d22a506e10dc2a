/**
 * The local runner: the same planner, worker and aggregator as on AWS, on this machine.
 * Objects live in a folder (OUT/.clusterwise), the queues in memory, workers in threads
 * (or inline with workers = 0), and the aggregator in the main thread.
 *
 * Planning runs on the main thread alone, so the threads start with it: the worker threads load
 * their kernel and, once planning has cut the shards, read and parse theirs (shard affinity
 * below); the report thread loads vega (report-renderer.ts).
 */
import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { ModelConfig } from '../config.js';
import { ClusterwiseError } from '../errors.js';
import { loadKernel, type BackendName } from '../kernel/backend.js';
import type { PosteriorDocument } from '../model/summary.js';
import { handleUpdates } from '../pipeline/aggregator.js';
import { inputSizes } from './input-files.js';
import { FolderObjectStore } from '../pipeline/folder-store.js';
import { withLargePayloads } from '../pipeline/large-payloads.js';
import { MemoryQueue } from '../pipeline/memory-queue.js';
import { planRun } from '../pipeline/planner.js';
import type { QueueMessage } from '../pipeline/ports.js';
import { keys, parseMessage, UpdateMessage } from '../pipeline/protocol.js';
import { readJson, silentLog, type Log, type Manifest, type Progress, type RoleContext, type RunState, type ShardPlan } from '../pipeline/run.js';
import { handleTaskDelivery, WorkerCache } from '../pipeline/worker.js';
import { startReportThread } from './report-renderer.js';
import { defaultThreads, localDataKey, spawnModuleWorker, type FromWorker, type ToWorker, type WorkerInit } from './threads.js';

export interface LocalFitOptions {
  /** CSV paths as the user gave them. */
  files: string[];
  config: ModelConfig;
  /** Output folder. */
  outDir: string;
  /** Worker threads; 0 runs the worker role inline. @default one per core, inline for data under 16 MiB (threads.ts defaultThreads) */
  workers?: number;
  backend?: BackendName | 'auto';
  onProgress?: (progress: Progress) => void;
  onPhase?: RoleContext['onPhase'];
  log?: Log;
}

export interface LocalFitResult {
  posterior: PosteriorDocument & { skipped: unknown[] };
  runId: string;
  kernel: string;
  posteriorPath: string;
  reportPath: string;
  assignmentsPath?: string;
}

const DATASET = 'local';
const MAX_RECEIVE_COUNT = 3;

/** The run ended failed (its reason is the message): permanent for this input and these settings. */
export class RunFailedError extends ClusterwiseError {
  constructor(message: string) {
    super(message);
    this.name = 'RunFailedError';
  }
}

export async function fitLocal(options: LocalFitOptions): Promise<LocalFitResult> {
  const log = options.log ?? silentLog;
  const outDir = path.resolve(options.outDir);
  const storeRoot = path.join(outDir, '.clusterwise');
  await mkdir(storeRoot, { recursive: true });
  const store = new FolderObjectStore(storeRoot, { durable: false });
  // Data files are objects keyed by their absolute path (localDataKey) under the root.
  const dataRoot = '/';
  const dataStore = new FolderObjectStore(dataRoot, { durable: false, etags: 'stat' });
  const deadTasks = new MemoryQueue({ name: 'tasks-dlq' });
  // Large bodies go through the folder exactly as they go through the bucket on AWS.
  const offload = { prefix: 'queue-payloads' };
  const tasks = withLargePayloads(
    new MemoryQueue({ name: 'tasks', visibilityTimeoutSeconds: 900, maxReceiveCount: MAX_RECEIVE_COUNT, deadLetter: deadTasks }),
    store,
    offload,
  );
  const updates = withLargePayloads(new MemoryQueue({ name: 'updates.fifo', fifo: true, visibilityTimeoutSeconds: 900 }), store, offload);
  const backend = options.backend ?? 'auto';
  // Loaded while planning lists and samples the data; planning needs it first to initialize. A
  // backend that cannot load fails the fit where it is awaited, not the process meanwhile.
  const kernelLoading = loadKernel(backend);
  kernelLoading.catch(() => {});

  let progress: Progress | undefined;
  /** Tasks finished in the current round, for the progress bar (the aggregator hears of rounds only). */
  let tasksDone = 0;
  // A file that cannot be read counts 0 here: planning reports it, naming the file.
  const dataBytes = (await inputSizes(options.files)).reduce((a, b) => a + b, 0);
  const workerCount = options.workers ?? defaultThreads(dataBytes);
  // The threads start while the main thread plans, on the core planning leaves idle: the worker
  // threads load their kernel, the report thread loads vega.
  const report = startReportThread({ dataRoot });
  // Each thread parses its shards (affinity below) while the main thread initializes: told as
  // soon as both it exists and planning has cut the shards, whichever comes last. Without worker
  // threads, the report thread parses them for the inline worker's cache.
  const cache = new WorkerCache();
  const spawned: Worker[] = [];
  let planned: ShardPlan | undefined;
  const prefetch = (worker: Worker, w: number) => {
    if (!planned) return;
    const shards = planned.shards.filter((s) => s.index % workerCount === w).map((s) => s.index);
    worker.postMessage({ type: 'prefetch', planned, shards } satisfies ToWorker);
  };
  // The shards first, then vega (the thread does one thing at a time).
  const prefetchInline = (ahead: ShardPlan) => {
    cache.prefetch({ store, dataStore }, ahead, ahead.shards.map((s) => s.index), (index) => report.parse(ahead, index));
    report.load();
  };
  if (workerCount > 0) report.load();
  const poolStarting =
    workerCount > 0
      ? startPool(
          workerCount,
          { storeRoot, dataRoot, backend, maxReceiveCount: MAX_RECEIVE_COUNT, tasksQueueName: tasks.name },
          (body, o) => updates.send(body, o),
          (worker, w) => prefetch((spawned[w] = worker), w),
        )
      : undefined;
  // A failed start is reported when the pool is awaited, after planning.
  poolStarting?.catch(() => {});
  const ctx = {
    store,
    dataStore,
    tasks,
    updates,
    log,
    workerConcurrency: Math.max(1, workerCount),
    onPhase: options.onPhase,
    // The helper thread loads vega while the main thread plans; it renders no throwaway report
    // (report-warmup.ts): on two cores that CPU slows the initialization as much as it speeds the
    // render (measured on the 100k-row bench file).
    report: { warm: async () => report.load(), render: report.render },
    onShardsPlanned: ({ runId, plan, files, shards }: ShardPlan) => {
      planned = { runId, plan, files, shards };
      if (workerCount > 0) spawned.forEach(prefetch);
      else prefetchInline(planned);
    },
    onProgress: (p: Progress) => {
      progress = p;
      tasksDone = 0;
      options.onProgress?.(p);
    },
  };
  let pool: Pool | undefined;
  let manifest: Manifest;
  try {
    manifest = await planRun(
      ctx,
      {
        dataset: DATASET,
        config: options.config,
        files: options.files.map((f) => ({ key: localDataKey(path.resolve(f)), name: f })),
        warmStart: false,
        // Each thread keeps its shards (shard affinity below): no binary copies to write or read.
        binaryShards: false,
      },
      kernelLoading,
    );
    pool = await poolStarting;
  } catch (error) {
    await Promise.all([report.stop(), poolStarting?.then((p) => p.stop(), () => {})]);
    throw error;
  }

  const reportTask = () => {
    tasksDone += 1;
    if (progress?.status === 'running' && progress.phase !== 'done') options.onProgress?.({ ...progress, shardsDone: Math.min(progress.shards, progress.shardsDone + tasksDone) });
  };
  const kernel = await kernelLoading;
  const inline = { ...ctx, kernel };
  try {
    // Event loop of the run: hand tasks to idle workers, feed results to the aggregator.
    while (!progress || progress.status === 'running') {
      let busy = false;
      if (pool) {
        // Shard affinity: shard s always goes to worker s mod W, so each worker parses and caches
        // only its share of the data across passes.
        for (let batch = await tasks.receive(10, 0); batch.length; batch = await tasks.receive(10, 0)) {
          for (const task of batch) pool.pending[shardOf(task) % pool.size].push(task);
          busy = true;
        }
        for (const worker of pool.idle()) {
          const task = pool.pending[worker].shift();
          if (!task) continue;
          pool.run(worker, task, (error) => {
            if (error) return void tasks.release(task, 0);
            void tasks.delete(task);
            reportTask();
          });
          busy = true;
        }
      } else {
        const [task] = await tasks.receive(1, 0);
        if (task) {
          busy = true;
          await handleTaskDelivery(inline, task, MAX_RECEIVE_COUNT, cache).then(
            async () => {
              await tasks.delete(task);
              reportTask();
            },
            () => tasks.release(task, 0),
          );
        }
      }
      const delivered = await updates.receive(10, 0);
      if (delivered.length) {
        busy = true;
        await handleUpdates(ctx, delivered.map((m: QueueMessage) => parseMessage(UpdateMessage, m.body, updates.name)));
        for (const m of delivered) await updates.delete(m);
      }
      if (!busy) {
        if (pool && pool.busyCount() === 0 && pool.pending.every((p) => !p.length) && (await tasks.depth()) === 0 && (await updates.depth()) === 0) {
          throw new RunFailedError('the run stalled: no task in flight and no update pending');
        }
        if (!pool) throw new RunFailedError('the run stalled: no task in flight and no update pending');
        await pool.nextEvent();
      }
    }
  } finally {
    await Promise.all([pool?.stop(), report.stop()]);
  }

  const state = (await readJson<RunState>(store, keys.state(DATASET, manifest.runId))).value;
  if (state.status === 'failed') throw new RunFailedError(state.failure ?? 'the run failed');
  const posterior = (await readJson<LocalFitResult['posterior']>(store, state.resultKey!)).value;
  const posteriorPath = path.join(outDir, 'posterior.json');
  const reportPath = path.join(outDir, 'report.html');
  await copyFile(path.join(storeRoot, state.resultKey!), posteriorPath);
  await copyFile(path.join(storeRoot, keys.result(DATASET, manifest.runId, 'report.html')), reportPath);
  let assignmentsPath: string | undefined;
  if (options.config.assignments) {
    assignmentsPath = path.join(outDir, 'assignments.csv');
    const parts: string[] = ['row,cluster,probability\n'];
    for (const shard of manifest.shards) {
      const text = Buffer.from((await store.get(keys.assignmentPart(DATASET, manifest.runId, shard.index))).body).toString('utf8');
      parts.push(text.slice(text.indexOf('\n') + 1));
    }
    await writeFile(assignmentsPath, parts.join(''));
  }
  return { posterior, runId: manifest.runId, kernel: kernel.name, posteriorPath, reportPath, assignmentsPath };
}

/** The shard a task message names (0 when the body is not a task: the worker reports it). */
function shardOf(message: QueueMessage): number {
  try {
    const shard = (JSON.parse(message.body) as { shard?: unknown }).shard;
    return typeof shard === 'number' && shard >= 0 ? shard : 0;
  } catch {
    return 0;
  }
}

interface Pool {
  size: number;
  /** Received tasks waiting for their worker (by worker index). */
  pending: QueueMessage[][];
  /** Indices of idle workers. */
  idle(): number[];
  busyCount(): number;
  run(worker: number, task: QueueMessage, done: (error?: string) => void): void;
  /** Resolves at the next worker event or update arrival. */
  nextEvent(): Promise<void>;
  stop(): Promise<void>;
}

async function startPool(
  count: number,
  init: WorkerInit,
  send: (body: string, o: { groupId?: string; deduplicationId?: string }) => Promise<void>,
  onSpawned: (worker: Worker, index: number) => void,
): Promise<Pool> {
  const busy = new Map<Worker, (error?: string) => void>();
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  const signal = () => {
    wake?.();
    wake = undefined;
  };
  const entry = new URL(`./worker-thread${path.extname(new URL(import.meta.url).pathname)}`, import.meta.url);
  const workers = await Promise.all(
    Array.from({ length: count }, async (_, index) => {
      const worker = await spawnModuleWorker(entry, init);
      onSpawned(worker, index);
      return new Promise<Worker>((resolve, reject) => {
        worker.on('message', (m: FromWorker) => {
          if (m.type === 'ready') resolve(worker);
          else if (m.type === 'send') {
            // Wake the loop once the update is on the queue, not before: else it finds none and idles.
            void send(m.body, { groupId: m.groupId, deduplicationId: m.deduplicationId }).then(signal, (error: Error) => {
              failure = error;
              signal();
            });
          } else if (m.type === 'done') {
            const done = busy.get(worker);
            busy.delete(worker);
            done?.(m.error);
            signal();
          }
        });
        worker.on('error', (error) => {
          failure = error;
          reject(error);
          signal();
        });
      });
    }),
  );
  return {
    size: count,
    pending: workers.map(() => []),
    idle: () => workers.flatMap((w, i) => (busy.has(w) ? [] : [i])),
    busyCount: () => busy.size,
    run(index, task, done) {
      busy.set(workers[index], done);
      workers[index].postMessage({ type: 'task', message: task } satisfies ToWorker);
    },

    async nextEvent() {
      if (failure) throw failure;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 200);
      });
      if (failure) throw failure;
    },
    async stop() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
