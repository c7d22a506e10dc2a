/**
 * Worker: one task = one shard against one posterior version (DESIGN.md §3). Reads the shard's
 * lines, parses and standardizes them (kept in a per-process cache across passes), runs the local
 * step and sends S_B with the row counts to the aggregator.
 */
import { readOwnedLines } from '../data/csv.js';
import { parseWith } from '../data/dataset.js';
import { toBatch } from '../data/dataset.js';
import { paramsFor, runLocalStep } from '../inference/vb.js';
import type { LocalParams } from '../model/posterior.js';
import { requestRefit } from './ingest.js';
import { DataError } from '../data/errors.js';
import { PreconditionFailedError, type QueueMessage } from './ports.js';
import {
  encodeFloat64,
  keys,
  parseMessage,
  TasksQueueMessage,
  updateSendOptions,
  type TaskMessage,
  type ResultMessage,
  type TaskFailedMessage,
} from './protocol.js';
import { decodeState, readJson, silentLog, specOf, type Manifest, type PosteriorVersion, type WorkerContext } from './run.js';

interface CachedShard {
  rows: number;
  skipped: number;
  lines: number;
  skippedExamples: ResultMessage['skippedExamples'];
  prepared: unknown;
  bytes: number;
}

/**
 * Per-process caches. A Lambda container or a local worker thread sees the same run many times
 * (SVI epochs, batch sweeps): parsing a shard once and reading each posterior version once is
 * most of the speed. Shards are evicted oldest-first beyond the byte budget.
 */
export class WorkerCache {
  private manifests = new Map<string, Manifest>();
  private params = new Map<string, LocalParams>();
  private shards = new Map<string, CachedShard>();
  private shardBytes = 0;

  constructor(private readonly budgetBytes = 768 * 1024 * 1024) {}

  async manifest(ctx: WorkerContext, task: TaskMessage): Promise<Manifest> {
    let m = this.manifests.get(task.runId);
    if (!m) {
      m = (await readJson<Manifest>(ctx.store, keys.manifest(task.dataset, task.runId))).value;
      this.manifests.set(task.runId, m);
    }
    return m;
  }

  async localParams(ctx: WorkerContext, manifest: Manifest, key: string): Promise<LocalParams> {
    let p = this.params.get(key);
    if (!p) {
      const doc = (await readJson<PosteriorVersion>(ctx.store, key)).value;
      p = paramsFor(specOf(manifest), decodeState(doc));
      if (this.params.size > 8) this.params.clear();
      this.params.set(key, p);
    }
    return p;
  }

  async shard(ctx: WorkerContext, manifest: Manifest, index: number): Promise<CachedShard> {
    const id = `${manifest.runId}/${index}`;
    const hit = this.shards.get(id);
    if (hit) return hit;
    const shard = manifest.shards[index];
    const file = manifest.files[shard.file];
    // Only the version the planner cut into shards: byte ranges of another version would split
    // lines anywhere and mix two datasets.
    const bytes = await readOwnedLines(ctx.dataStore ?? ctx.store, file.key, shard.start, shard.end, file.dataStart, {
      fileSize: file.size,
      ifMatch: file.etag,
    }).catch((error: unknown) => {
      if (!(error instanceof PreconditionFailedError)) throw error;
      throw new DataError('changed since the run was planned; the run cannot mix two versions (a refit will read the new one)', { file: file.name }, { cause: error });
    });
    const parsed = parseWith(manifest.plan, file, bytes);
    const batch = toBatch(manifest.plan, manifest.standardization, parsed);
    const entry: CachedShard = {
      rows: parsed.rows,
      skipped: parsed.skippedCount,
      lines: parsed.lineCount,
      skippedExamples: parsed.skipped,
      prepared: ctx.kernel.prepare(batch),
      bytes: (batch.x.length + batch.u.length + batch.y.length) * 8,
    };
    this.shards.set(id, entry);
    this.shardBytes += entry.bytes;
    for (const [key, old] of this.shards) {
      if (this.shardBytes <= this.budgetBytes || key === id) break;
      ctx.kernel.release(old.prepared);
      this.shardBytes -= old.bytes;
      this.shards.delete(key);
    }
    return entry;
  }
}

const defaultCache = new WorkerCache();

/** Run one task; for the assign phase also writes the shard's assignment part. */
export async function runTask(ctx: WorkerContext, task: TaskMessage, cache = defaultCache): Promise<ResultMessage> {
  const manifest = await cache.manifest(ctx, task);
  const params = await cache.localParams(ctx, manifest, task.posteriorKey);
  const shard = await cache.shard(ctx, manifest, task.shard);
  const assign = task.phase === 'assign';
  const result = runLocalStep(ctx.kernel, params, shard.prepared, { responsibilities: assign });
  if (assign) await writeAssignments(ctx, manifest, task, result.responsibilities!, shard.rows);
  return {
    kind: 'result',
    dataset: task.dataset,
    runId: task.runId,
    taskId: task.taskId,
    shard: task.shard,
    phase: task.phase,
    round: task.round,
    baseVersion: task.baseVersion,
    rows: shard.rows,
    skipped: shard.skipped,
    lines: shard.lines,
    skippedExamples: shard.skippedExamples,
    logLik: result.logLik,
    ...(assign ? {} : { stats: encodeFloat64(result.stats) }),
  };
}

/** row,cluster,probability for every kept row of the shard (row: 0-based among all kept rows). */
async function writeAssignments(ctx: WorkerContext, manifest: Manifest, task: TaskMessage, r: Float64Array, rows: number) {
  const T = manifest.config.components;
  const clusterOf = task.clusterOf ?? [];
  const offset = task.rowOffset ?? 0;
  const lines = ['row,cluster,probability'];
  for (let n = 0; n < rows; n++) {
    let best = -1;
    for (let k = 0; k < T; k++) if (clusterOf[k] >= 0 && (best < 0 || r[n * T + k] > r[n * T + best])) best = k;
    lines.push(`${offset + n},${best < 0 ? '' : clusterOf[best]},${best < 0 ? '' : r[n * T + best].toPrecision(6)}`);
  }
  await ctx.store.put(keys.assignmentPart(task.dataset, task.runId, task.shard), lines.join('\n') + '\n', { contentType: 'text/csv' });
}

/**
 * Handle one delivery from the tasks queue: parse, run, send the result. On the last allowed
 * delivery a failure is also reported to the aggregator, so the run is marked failed with the
 * reason while the message itself goes to the dead-letter queue.
 */
export async function handleTaskDelivery(ctx: WorkerContext, message: QueueMessage, maxReceiveCount: number, cache = defaultCache): Promise<void> {
  const log = ctx.log ?? silentLog;
  let task: TaskMessage | undefined;
  try {
    const parsed = parseMessage(TasksQueueMessage, message.body, ctx.tasks.name);
    if (parsed.kind === 'refit') {
      const outcome = await requestRefit(ctx, parsed.dataset, ctx.kernel);
      log.info('refit requested by the aggregator', { dataset: parsed.dataset, ...outcome });
      return;
    }
    task = parsed;
    const result = await runTask(ctx, task, cache);
    await ctx.updates.send(JSON.stringify(result), updateSendOptions(result));
    log.info('task done', { runId: task.runId, taskId: task.taskId, rows: result.rows, skipped: result.skipped });
  } catch (error) {
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    log.error('task failed', { taskId: task?.taskId, receiveCount: message.receiveCount, reason });
    if (message.receiveCount >= maxReceiveCount) await reportFailure(ctx, message.body, task, reason);
    throw error;
  }
}

/** Tell the aggregator a task is lost; a body too broken to name its run can only be dead-lettered. */
async function reportFailure(ctx: WorkerContext, body: string, task: TaskMessage | undefined, reason: string) {
  let ids: { dataset?: unknown; runId?: unknown; taskId?: unknown } = task ?? {};
  if (!task) {
    try {
      ids = JSON.parse(body);
    } catch {
      return;
    }
  }
  if (typeof ids.dataset !== 'string' || typeof ids.runId !== 'string') return;
  const failed: TaskFailedMessage = {
    kind: 'task-failed',
    dataset: ids.dataset,
    runId: ids.runId,
    taskId: typeof ids.taskId === 'string' ? ids.taskId : 'unknown',
    reason,
  };
  await ctx.updates.send(JSON.stringify(failed), updateSendOptions(failed));
}
