/**
 * Worker: one task = one shard against one posterior version (docs/model.md §7, docs/deploy.md §6).
 * Reads the shard (parsed rows from a per-process cache, else the run's binary copy of the shard,
 * else its CSV lines, parsed once and stored in binary for later passes), runs the local step,
 * writes the shard's statistics, and takes part in the round's reduce: whichever task sees its
 * whole group written sums the group, and whichever group sum completes the round tells the
 * aggregator. So the serial aggregator reads a few group sums per round, not one result per task.
 */
import pMap from 'p-map';
import { readOwnedLines, type ParsedRows } from '../data/csv.js';
import { missingByColumn, parseWith, toBatch } from '../data/dataset.js';
import { Scratch } from '../data/scratch.js';
import { DataError, fileNotFound } from '../data/errors.js';
import { paramsFor, runLocalStep } from '../inference/vb.js';
import type { Batch } from '../kernel/types.js';
import type { LocalParams } from '../model/posterior.js';
import { packSymmetric } from '../model/spec.js';
import { decodeBinary, encodeBinary } from './binary.js';
import { describeError, InternalError, isRetryable } from '../errors.js';
import { deadLetter, failureOf } from './failures.js';
import { requestRefit } from './ingest.js';
import { NotFoundError, PreconditionFailedError, type ObjectStore, type QueueMessage } from './ports.js';
import {
  groupCount,
  groupSize,
  INTERMEDIATE_TAGS,
  keys,
  parseMessage,
  TasksQueueMessage,
  updateSendOptions,
  type PrefetchMessage,
  type RoundCompleteMessage,
  type SkippedRowReport,
  type TaskMessage,
} from './protocol.js';
import { readJson, readPosterior, silentLog, specOf, type DeliveryContext, type Manifest, type PrefetchPlan, type RoleContext, type ShardPlan, type WorkerContext } from './run.js';

/** Parallel object reads of one role invocation (S3 serves these concurrently). */
export const READ_CONCURRENCY = 32;

/** A shard's rows as the kernel takes them, with the counts every task of it reports. */
interface LoadedShard extends ShardCounts {
  prepared: unknown;
  bytes: number;
  /** Rows each stored row stands for: 1 (every row is kept), more for a sampled stand-in (the simulator's). */
  weight: number;
}

/** What every task of a shard reports about its rows. */
export interface ShardCounts {
  rows: number;
  skipped: number;
  lines: number;
  skippedExamples: SkippedRowReport[];
  /** Missing values of the kept rows by column, where the model marginalizes them (docs/model.md §18); absent: none. */
  missing?: Record<string, number>;
}

/** A shard's standardized rows at float32 (what the binary copy holds), with its counts. */
export interface ShardRows {
  counts: ShardCounts;
  batch: { n: number; x: Float32Array; u: Float32Array; y: Float32Array; offset?: Float32Array; categories?: Int32Array };
  /** The clustering columns x holds, in order. @default the manifest's (plan.x) */
  xColumns?: string[];
  /** @default 1 (see LoadedShard.weight) */
  weight?: number;
}

/**
 * How a shard's rows are made and stored: from its CSV bytes, and to and from its binary copy.
 * One implementation serves the product (csvShardCodec); the simulator substitutes one that
 * stands a sample of the shard's rows in for all of them (bench/sim), so everything else the
 * worker does (its reads, writes and reduce) is the real code at any scale.
 */
export interface ShardCodec {
  parse(manifest: PrefetchPlan, index: number, bytes: Uint8Array): ShardRows;
  encode(rows: ShardRows): Uint8Array;
  decode(bytes: Uint8Array, key: string): ShardRows;
}

/**
 * The parsed values and the float64 batch of the shard being made, reused shard after shard: they
 * live only until asFloat32 has copied the batch, and fresh arrays of a shard's size cost as much
 * as parsing it (first-touch page zeroing; lib/data/scratch.ts). Safe because a shard is made
 * synchronously, and the copies are what the cache and the binary copy keep.
 */
const shardScratch = new Scratch();

/** A shard's parsed CSV rows as the kernel takes them: standardized, at float32. */
function shardRowsOf(manifest: PrefetchPlan, parsed: ParsedRows): ShardRows {
  // toBatch first: it moves rows the kernel cannot take to the skipped ones.
  const batch = asFloat32(toBatch(manifest.plan, manifest.standardization, parsed, shardScratch));
  const missing = missingByColumn(manifest.plan, parsed);
  return {
    counts: { rows: parsed.rows, skipped: parsed.skippedCount, lines: parsed.lineCount, skippedExamples: parsed.skipped, ...(missing ? { missing } : {}) },
    batch,
    xColumns: manifest.plan.x,
  };
}

/**
 * The rows with x narrowed to `columns` (a copy stored while the planner had not yet chosen the
 * relevant covariates holds every candidate; PrefetchPlan). The standardization of a kept column
 * does not depend on the others, so the kept values are the manifest's.
 */
export function withClusteringColumns(rows: ShardRows, columns: readonly string[]): ShardRows {
  const held = rows.xColumns;
  if (!held || (held.length === columns.length && held.every((c, i) => c === columns[i]))) return rows;
  const at = columns.map((c) => held.indexOf(c));
  if (at.includes(-1)) throw new InternalError(`a shard's binary copy holds clustering columns ${held.join(', ')}, not ${columns.join(', ')}`);
  const { n, x } = rows.batch;
  const D = held.length;
  const narrowed = new Float32Array(n * at.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < at.length; j++) narrowed[i * at.length + j] = x[i * D + at[j]];
  return { ...rows, batch: { ...rows.batch, x: narrowed }, xColumns: [...columns] };
}

export const csvShardCodec: ShardCodec = {
  parse(manifest, index, bytes) {
    return shardRowsOf(manifest, parseWith(manifest.plan, manifest.files[manifest.shards[index].file], bytes, undefined, shardScratch));
  },
  encode({ counts, batch, weight, xColumns }) {
    // u = [r; 1]: the intercept is not stored, nor r when it repeats x (the default columns).
    const D = batch.n ? batch.x.length / batch.n : 0;
    const P = batch.n ? batch.u.length / batch.n : 1;
    const r = new Float32Array(batch.n * (P - 1));
    let rIsX = P - 1 === D;
    for (let i = 0; i < batch.n; i++)
      for (let j = 0; j < P - 1; j++) {
        const v = (r[i * (P - 1) + j] = batch.u[i * P + j]);
        if (rIsX && !Object.is(v, batch.x[i * D + j])) rIsX = false; // a missing cell is NaN in both
      }
    const arrays: Record<string, Float32Array | Int32Array> = rIsX ? { x: batch.x, y: batch.y } : { x: batch.x, r, y: batch.y };
    if (batch.offset) arrays.offset = batch.offset;
    if (batch.categories) arrays.categories = batch.categories;
    return encodeBinary({ format: 'clusterwise/shard@1', ...counts, weight: weight ?? 1, P, ...(xColumns ? { xColumns } : {}) }, arrays);
  },
  decode(bytes, key) {
    const { header, arrays } = decodeBinary<ShardCounts & { weight: number; P: number; xColumns?: string[] }>(bytes, key);
    const { rows, skipped, lines, skippedExamples, missing, weight, P, xColumns } = header;
    const x = arrays.x as Float32Array;
    const y = arrays.y as Float32Array;
    const r = (arrays.r ?? x) as Float32Array;
    const n = y.length;
    const u = new Float32Array(n * P);
    const R = P - 1;
    for (let i = 0, from = 0, to = 0; i < n; i++) {
      for (let j = 0; j < R; j++) u[to++] = r[from++];
      u[to++] = 1;
    }
    const offset = arrays.offset as Float32Array | undefined;
    const categories = arrays.categories as Int32Array | undefined;
    return {
      counts: { rows, skipped, lines, skippedExamples, ...(missing ? { missing } : {}) },
      weight,
      batch: { n, x, u, y, ...(offset ? { offset } : {}), ...(categories ? { categories } : {}) },
      ...(xColumns ? { xColumns } : {}),
    };
  },
};

/** What a task reports for its shard: the header of a partial sum (statistics travel beside it). */
export interface ShardReport {
  shard: number;
  rows: number;
  skipped: number;
  lines: number;
  logLik: number;
  skippedExamples: SkippedRowReport[];
  missing?: Record<string, number>;
}

/** A shard's counts as the reduce passes them on: shard, rows, skipped, lines, and its missing values by column when it has any. */
export type ShardCountsRow = [number, number, number, number] | [number, number, number, number, Record<string, number>];

/** What a group sum carries beside its statistics. */
export interface GroupReport {
  rows: number;
  logLik: number;
  /** [shard, rows, skipped, lines (, missing by column)] of every task of the group. */
  shards: ShardCountsRow[];
  /** Skipped-row details of the group's shards (at most MAX_SKIPPED_EXAMPLES). */
  skippedExamples: (SkippedRowReport & { shard: number })[];
}

export const MAX_SKIPPED_EXAMPLES = 50;

/** The batch rounded to float32, the precision of the stored shard: every pass sees the same numbers. */
function asFloat32(batch: Batch): ShardRows['batch'] {
  const out: ShardRows['batch'] = { n: batch.n, x: Float32Array.from(batch.x), u: Float32Array.from(batch.u), y: Float32Array.from(batch.y) };
  if (batch.offset) out.offset = Float32Array.from(batch.offset);
  if (batch.categories) out.categories = Int32Array.from(batch.categories);
  return out;
}

/** The rows as the kernel takes them: float32 as stored (no float64 copy of a shard; Kernel.prepare). */
function kernelBatch(rows: ShardRows): Batch<Float32Array> {
  return { ...rows.batch, weight: rows.weight ?? 1 };
}

/**
 * Per-process caches. A Lambda container or a local worker thread sees the same run many times
 * (SVI steps, batch sweeps): the manifest is read once, each posterior version once, and a shard
 * is parsed once. Shards are evicted oldest-first beyond the byte budget.
 */
export class WorkerCache {
  private manifests = new Map<string, Manifest>();
  private prefetchPlans = new Map<string, Promise<PrefetchPlan>>();
  private params = new Map<string, LocalParams>();
  private shards = new Map<string, LoadedShard>();
  private shardBytes = 0;
  /** Shards read and parsed ahead of their first task (prefetch), with the columns they were parsed for. */
  private prefetched = new Map<string, Ahead>();

  constructor(
    private readonly budgetBytes = 768 * 1024 * 1024,
    private readonly codec: ShardCodec = csvShardCodec,
  ) {}

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
      const spec = specOf(manifest);
      p = paramsFor(spec, (await readPosterior(ctx.store, spec, key)).state);
      if (this.params.size > 8) this.params.clear();
      this.params.set(key, p);
    }
    return p;
  }

  /**
   * Starts reading and parsing shards of a run being planned, before its first round exists
   * (the local runner does this while the main thread initializes, on the core that leaves
   * idle). Parsing needs only the columns and the files, which planning fixes before it
   * initializes. `elsewhere` parses in another thread (the inline runner's helper); such a shard
   * is parsed here after all when its task comes first. A failure is not reported here: the
   * shard's task reads it again and reports.
   */
  prefetch(ctx: ShardReader, planned: ShardPlan, indices: readonly number[], elsewhere?: ShardParser): void {
    if (this.codec !== csvShardCodec) return;
    for (const index of indices) {
      const id = `${planned.runId}/${index}`;
      if (this.shards.has(id) || this.prefetched.has(id)) continue;
      const ahead: Ahead = { wait: !elsewhere, result: Promise.resolve() };
      ahead.result = (elsewhere ?? ((i: number) => parseAhead(ctx, planned, i)))(index).then(
        (rows) => void (ahead.done = { select: JSON.stringify(planned.plan.select), parsed: rows }),
        () => {},
      );
      this.prefetched.set(id, ahead);
    }
  }

  /**
   * Parses shards the planner announced (PrefetchMessage) and stores their binary copies, for the
   * first round to read. Never fails: the shard's task reads its CSV again and reports what failed.
   */
  async storeAhead(ctx: RoleContext, message: PrefetchMessage): Promise<void> {
    const log = ctx.log ?? silentLog;
    const planKey = keys.prefetchPlan(message.dataset, message.runId);
    let plan = this.prefetchPlans.get(planKey);
    if (!plan) {
      plan = readJson<PrefetchPlan>(ctx.store, planKey).then((r) => r.value);
      this.prefetchPlans.set(planKey, plan);
      plan.catch(() => this.prefetchPlans.delete(planKey));
    }
    const failed = (index: number) => (error: unknown) =>
      log.warn('prefetch failed; the shard\'s task reads its CSV', { runId: message.runId, shard: index, reason: describeError(error) });
    let source: PrefetchPlan;
    try {
      source = await plan;
    } catch (error) {
      for (const index of message.shards) failed(index)(error);
      return;
    }
    // A pipeline: the next shard's CSV is read, and the last copy written, while this one parses.
    const read = (index: number) => readShardBytes(ctx, source, index).then((bytes) => ({ bytes }), (error: unknown) => ({ error }));
    const writes: Promise<unknown>[] = [];
    let next = read(message.shards[0]);
    for (let i = 0; i < message.shards.length; i++) {
      const index = message.shards[i];
      const got = await next;
      if (i + 1 < message.shards.length) next = read(message.shards[i + 1]);
      try {
        if ('error' in got) throw got.error;
        const bytes = this.codec.encode(this.codec.parse(source, index, got.bytes));
        writes.push(ctx.store.put(keys.shardRows(source.dataset, source.runId, index), bytes, { tags: { ...INTERMEDIATE_TAGS } }).catch(failed(index)));
      } catch (error) {
        failed(index)(error);
      }
    }
    await Promise.all(writes);
  }

  /** `fresh`: no pass has read the shard yet, so it has no binary copy to look for. */
  async shard(ctx: WorkerContext, manifest: Manifest, index: number, fresh = false): Promise<LoadedShard> {
    const id = `${manifest.runId}/${index}`;
    const hit = this.shards.get(id);
    if (hit) return hit;
    const pending = this.prefetched.get(id);
    this.prefetched.delete(id);
    // Parsed here, awaited; parsed elsewhere, taken if done (else parsing here is sooner).
    if (pending?.wait) await pending.result;
    const ahead = pending?.done;
    // Parsed for the same columns (planning may narrow x after it, not what is parsed).
    const parsed = ahead?.select === JSON.stringify(manifest.plan.select) ? ahead.parsed : undefined;
    // A prefetched run's first read looks for the copy too (its prefetch may have stored it).
    const look = manifest.binaryShards && (!fresh || manifest.prefetched === true) && !parsed;
    const stored = look ? await readStoredShard(ctx.store, manifest, index, this.codec) : undefined;
    let rows = stored && withClusteringColumns(stored, manifest.plan.x);
    // A copy made before x was narrowed may hold a dropped covariate's missing value as a regression
    // input the run no longer integrates out (relevance.ts narrowToRelevant): read the CSV again.
    if (rows && rows !== stored && rows.batch.u.some(Number.isNaN)) rows = undefined;
    rows ??= await parseShard(ctx, manifest, index, this.codec, parsed);
    const entry: LoadedShard = {
      ...rows.counts,
      weight: rows.weight ?? 1,
      prepared: ctx.kernel.prepare(kernelBatch(rows)),
      bytes: (rows.batch.x.length + rows.batch.u.length + rows.batch.y.length) * 8,
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

/** The run's binary copy of a shard, or undefined when no pass has stored it yet. */
async function readStoredShard(store: ObjectStore, manifest: Manifest, index: number, codec: ShardCodec): Promise<ShardRows | undefined> {
  const key = keys.shardRows(manifest.dataset, manifest.runId, index);
  try {
    return codec.decode((await store.get(key)).body, key);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}

/** Where a worker reads shards from. */
type ShardReader = Pick<WorkerContext, 'store' | 'dataStore'>;

/** Parses shard `index` of a planned run in another thread that reads the same files (the inline runner's helper). */
export type ShardParser = (index: number) => Promise<ParsedRows>;

/** A shard being parsed ahead: awaited when parsed in this thread, else used only once `done`. */
interface Ahead {
  wait: boolean;
  result: Promise<void>;
  done?: { select: string; parsed: ParsedRows };
}

/** A planned shard's CSV lines, read and parsed for the plan's columns (what WorkerCache.prefetch keeps). */
export async function parseAhead(ctx: ShardReader, planned: ShardPlan, index: number): Promise<ParsedRows> {
  return parseWith(planned.plan, planned.files[planned.shards[index].file], await readShardBytes(ctx, planned, index));
}

/** The shard's CSV lines. */
async function readShardBytes(ctx: ShardReader, planned: ShardPlan, index: number): Promise<Uint8Array> {
  const shard = planned.shards[index];
  const file = planned.files[shard.file];
  // Only the version the planner cut into shards: byte ranges of another version would split
  // lines anywhere and mix two datasets.
  return readOwnedLines(ctx.dataStore ?? ctx.store, file.key, shard.start, shard.end, file.dataStart, {
    fileSize: file.size,
    ifMatch: file.etag,
  }).catch((error: unknown) => {
    // The object was deleted after planning: gone for good, like one replaced (below).
    if (error instanceof NotFoundError) throw fileNotFound(file.name, error);
    if (!(error instanceof PreconditionFailedError)) throw error;
    throw new DataError('changed since the run was planned; the run cannot mix two versions (a refit will read the new one)', { file: file.name }, { cause: error });
  });
}

/**
 * Read and parse the shard's CSV lines (or take those parsed ahead, `parsed`); store them in
 * binary for later passes when the run keeps shards.
 */
async function parseShard(ctx: WorkerContext, manifest: Manifest, index: number, codec: ShardCodec, parsed?: ParsedRows): Promise<ShardRows> {
  const rows = parsed ? shardRowsOf(manifest, parsed) : codec.parse(manifest, index, await readShardBytes(ctx, manifest, index));
  if (manifest.binaryShards) {
    await ctx.store.put(keys.shardRows(manifest.dataset, manifest.runId, index), codec.encode(rows), { tags: { ...INTERMEDIATE_TAGS } });
  }
  return rows;
}

const defaultCache = new WorkerCache();

/** A task's result that cannot be used: a permanent failure of the run, with the shard named. */
export class NonFiniteResultError extends DataError {
  constructor(manifest: Manifest, shard: number) {
    const s = manifest.shards[shard];
    super(`shard ${shard} (bytes ${s.start}–${s.end}): the local step gave a non-finite value; a value in these rows is too large for the model`, {
      file: manifest.files[s.file].name,
    });
    this.name = 'NonFiniteResultError';
  }
}

/**
 * Run one task: its shard's statistics are written as the task's partial sum, then the task takes
 * its part in the round's reduce. The assign phase also writes the shard's assignment part.
 */
export async function runTask(ctx: WorkerContext, task: TaskMessage, cache = defaultCache): Promise<ShardReport> {
  const manifest = await cache.manifest(ctx, task);
  const spec = specOf(manifest);
  // The posterior version and the shard are independent reads: one request's latency, not two.
  const [params, shard] = await Promise.all([cache.localParams(ctx, manifest, task.posteriorKey), cache.shard(ctx, manifest, task.shard, task.fresh)]);
  const assign = task.round.phase === 'assign';
  const result = runLocalStep(ctx.kernel, params, shard.prepared, { responsibilities: assign });
  if (shard.weight !== 1) {
    for (let i = 0; i < result.stats.length; i++) result.stats[i] *= shard.weight;
    result.logLik *= shard.weight;
  }
  if (!Number.isFinite(result.logLik) || !result.stats.every(Number.isFinite)) throw new NonFiniteResultError(manifest, task.shard);
  if (assign) await writeAssignments(ctx, manifest, task, result.responsibilities!, shard.rows);
  const report: ShardReport = {
    shard: task.shard,
    rows: shard.rows,
    skipped: shard.skipped,
    lines: shard.lines,
    logLik: result.logLik,
    skippedExamples: shard.skippedExamples,
    ...(shard.missing ? { missing: shard.missing } : {}),
  };
  const group = Math.floor(task.index / task.round.fanIn);
  await ctx.store.put(
    keys.partial(task.dataset, task.runId, task.round.id, group, task.index),
    encodeBinary({ format: 'clusterwise/partial@1', ...report }, assign ? {} : { stats: packSymmetric(spec, result.stats) }),
    { tags: { ...INTERMEDIATE_TAGS } },
  );
  await reduceGroup(ctx, task, group);
  return report;
}

/**
 * The reduce's two levels. Each writer lists what its level holds after its own write; S3 lists
 * are strongly consistent, so at least the last writer sees the level complete. Of those that see
 * it complete, one claims the next step with a conditional put (If-None-Match) and does it; a
 * claimer that crashes is redelivered as the same task and finds its own claim. On a store that
 * ignored conditions (the bare test emulator) several would do it: they form the same sum, in
 * task order, and the round completes once by its id; only the extra reads are lost.
 */
async function reduceGroup(ctx: WorkerContext, task: TaskMessage, group: number): Promise<void> {
  const { dataset, runId, round } = task;
  const size = groupSize(round, group);
  const prefix = keys.partialPrefix(dataset, runId, round.id, group);
  if ((await ctx.store.list(prefix)).filter((o) => PARTIAL.test(o.key)).length < size) return;
  if (!(await claim(ctx.store, `${prefix}combiner`, task.taskId))) return;
  const parts = await pMap(
    Array.from({ length: size }, (_, i) => keys.partial(dataset, runId, round.id, group, group * round.fanIn + i)),
    async (key) => decodeBinary<ShardReport>((await ctx.store.get(key)).body, key),
    { concurrency: READ_CONCURRENCY },
  );
  const report: GroupReport = { rows: 0, logLik: 0, shards: [], skippedExamples: [] };
  const stats = parts[0].arrays.stats ? new Float64Array(parts[0].arrays.stats.length) : undefined;
  for (const { header, arrays } of parts) {
    report.rows += header.rows;
    report.logLik += header.logLik;
    report.shards.push(header.missing ? [header.shard, header.rows, header.skipped, header.lines, header.missing] : [header.shard, header.rows, header.skipped, header.lines]);
    for (const example of header.skippedExamples) {
      if (report.skippedExamples.length < MAX_SKIPPED_EXAMPLES) report.skippedExamples.push({ shard: header.shard, ...example });
    }
    if (stats) addInto(stats, arrays.stats as Float64Array);
  }
  const sums = keys.groupSumPrefix(dataset, runId, round.id);
  await ctx.store.put(keys.groupSum(dataset, runId, round.id, group), encodeBinary({ format: 'clusterwise/group@1', ...report }, stats ? { stats } : {}), {
    tags: { ...INTERMEDIATE_TAGS },
  });
  if ((await ctx.store.list(sums)).filter((o) => GROUP_SUM.test(o.key)).length < groupCount(round)) return;
  if (!(await claim(ctx.store, `${sums}complete`, task.taskId))) return;
  const complete: RoundCompleteMessage = { kind: 'round-complete', dataset, runId, roundId: round.id };
  await ctx.updates.send(JSON.stringify(complete), updateSendOptions(complete));
}

const PARTIAL = /\/t\d+\.bin$/;
const GROUP_SUM = /\/g\d+\.bin$/;

/** Claim `key` for `owner`: true when this call wrote it, or an earlier delivery of the same owner did. */
async function claim(store: ObjectStore, key: string, owner: string): Promise<boolean> {
  try {
    await store.put(key, owner, { ifNoneMatch: '*', tags: { ...INTERMEDIATE_TAGS } });
    return true;
  } catch (error) {
    if (!(error instanceof PreconditionFailedError)) throw error;
    return Buffer.from((await store.get(key)).body).toString('utf8') === owner;
  }
}

/** a += b, element by element (float64). */
export function addInto(a: Float64Array, b: Float64Array): Float64Array {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
  return a;
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
export async function handleTaskDelivery(ctx: DeliveryContext, message: QueueMessage, maxReceiveCount: number, cache = defaultCache): Promise<void> {
  const log = ctx.log ?? silentLog;
  let task: TaskMessage | undefined;
  try {
    const parsed = parseMessage(TasksQueueMessage, message.body, ctx.tasks.name);
    if (parsed.kind === 'prefetch') {
      await cache.storeAhead(ctx, parsed);
      return;
    }
    if (parsed.kind === 'wake') return; // its delivery started this container: that was the point
    if (parsed.kind === 'refit') {
      // The message id is the same on every delivery: a redelivery after a crash resumes the refit.
      const outcome = await requestRefit(ctx, parsed.dataset, ctx.kernel, {}, { request: `refit/${message.id}`, ...(parsed.after ? { after: parsed.after } : {}) });
      log.info('refit requested by the aggregator', { dataset: parsed.dataset, ...outcome });
      return;
    }
    task = parsed;
    const report = await runTask({ ...ctx, kernel: await ctx.kernel }, task, cache);
    log.info('task done', { runId: task.runId, taskId: task.taskId, rows: report.rows, skipped: report.skipped });
  } catch (error) {
    const reason = describeError(error);
    const permanent = !isRetryable(error);
    log.error('task failed', { taskId: task?.taskId, receiveCount: message.receiveCount, reason, permanent });
    // A lost task fails its run; a body too broken to name its run can only be dead-lettered.
    const failed = permanent || message.receiveCount >= maxReceiveCount ? failureOf(message.body, reason, task) : undefined;
    if (failed) await ctx.updates.send(JSON.stringify(failed), updateSendOptions(failed));
    // A permanent failure would fail the same way on every delivery (lib/pipeline/failures.ts).
    if (permanent && (await deadLetter(ctx.deadLetter?.tasks, message))) {
      log.error('task dead-lettered at once', { taskId: task?.taskId, messageId: message.id, reason });
      return;
    }
    throw error;
  }
}
