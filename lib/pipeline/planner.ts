/**
 * Planner: from a dataset's CSV objects to a running fit (docs/deploy.md §2, §6). Lists and opens the
 * files, cuts them into line-aligned byte shards, samples rows for standardization and
 * initialization, writes the manifest, posterior version 0 and the run state, and sends the
 * first tasks.
 */
import { randomUUID } from 'node:crypto';
import { parseConfig, type ModelConfig } from '../config.js';
import { planByteShards, readOwnedLines } from '../data/csv.js';
import { DataError } from '../data/errors.js';
import {
  openDataFile,
  planColumns,
  readSampleWindows,
  parseSample,
  rowsFromFirstWindow,
  settleLevels,
  standardizationOf,
  toBatch,
  type ColumnPlan,
  type DataFile,
} from '../data/dataset.js';
import { initialize, scaleToRows, type InitResult } from '../inference/init.js';
import { initializeWithRelevance, narrowToRelevant, relevanceOf } from '../inference/relevance.js';
import { MAX_PLOTTED_ROWS } from '../rows.js';
import type { ParsedRows } from '../data/csv.js';
import { withUpdatedAlpha } from '../inference/vb.js';
import { completeRows } from '../kernel/batch.js';
import type { Kernel } from '../kernel/types.js';
import type { GlobalState } from '../model/posterior.js';
import { modelOf, type PosteriorDocument } from '../model/summary.js';
import { initialRunState, sendTasks } from './dispatch.js';
import type { ObjectInfo } from './ports.js';
import { INTERMEDIATE_TAGS, keys, updateSendOptions, type PlanningMessage, type PrefetchMessage, type WakeMessage } from './protocol.js';
import {
  encodePosterior,
  jsonBody,
  readJsonIfExists,
  silentLog,
  specOf,
  type Manifest,
  type PlanPhase,
  type PrefetchPlan,
  type RoleContext,
  type Shard,
} from './run.js';

export interface PlanRequest {
  dataset: string;
  /** The model configuration (already validated). */
  config: ModelConfig;
  /** Explicit data objects; default: every .csv under datasets/<dataset>/data/. */
  files?: { key: string; name?: string }[];
  /** Workers the run is planned for (shard size, SVI step width). @default ctx.workerConcurrency, else DEFAULT_WORKER_CONCURRENCY */
  workers?: number;
  /**
   * Workers store each shard's parsed rows in binary on first read, so later passes read no CSV
   * and any worker can take any shard (Lambda). Off where one process keeps its shards (local threads). @default true
   */
  binaryShards?: boolean;
  /** Start from models/<dataset>/latest.json when it fits the same columns. @default true */
  warmStart?: boolean;
  runId?: string;
  now?: Date;
}

/** The writer id of a run's first version and round: fixed, so a retry can form the first round's tasks again (ingest.ts). */
export const PLANNER_WRITER = 'planner';

/** Workers assumed when the caller does not know them (`clusterwise submit`): the stack's default concurrency. */
export const DEFAULT_WORKER_CONCURRENCY = 20;

/**
 * Shards sized to the deployment (docs/deploy.md §6): about SHARDS_PER_WORKER shards per worker
 * per pass, so a sweep balances over the workers, within [MIN_SHARD_ROWS, MAX_SHARD_ROWS]: below,
 * a task's fixed costs (queue message, posterior read, partial write) dominate; above, a shard
 * outgrows a worker's memory and its task outlasts a step. `schedule.shardRows` overrides.
 */
export const SHARDS_PER_WORKER = 2;
export const MIN_SHARD_ROWS = 20_000;
export const MAX_SHARD_ROWS = 500_000;

export function shardRowsFor(config: ModelConfig, rowEstimate: number, workers: number): number {
  const sized = Math.round(rowEstimate / (SHARDS_PER_WORKER * workers));
  return config.schedule.shardRows ?? Math.min(MAX_SHARD_ROWS, Math.max(MIN_SHARD_ROWS, sized));
}

/** Evenly spaced rows of the sample as records of the used columns (data units, a category as its level): what the report plots. */
function sampleRecords(plan: ColumnPlan, parsed: ParsedRows): Record<string, number | string>[] {
  const width = plan.select.length;
  const step = Math.max(1, Math.ceil(parsed.rows / MAX_PLOTTED_ROWS));
  const records: Record<string, number | string>[] = [];
  for (let i = 0; i < parsed.rows; i += step) {
    records.push(Object.fromEntries(plan.select.map((s, j) => [s.column, s.levels ? s.levels[parsed.values[i * width + j]] : parsed.values[i * width + j]])));
  }
  return records;
}

/** Read datasets/<name>/model.json (if any) and merge the request's settings over it. */
export async function datasetConfig(ctx: RoleContext, dataset: string, overrides: Record<string, unknown> = {}): Promise<ModelConfig> {
  const key = keys.modelConfig(dataset);
  let stored: Record<string, unknown> = {};
  try {
    stored = (await readJsonIfExists<Record<string, unknown>>(ctx.store, key))?.value ?? {};
  } catch (cause) {
    throw new DataError(`not valid JSON`, { file: key }, { cause });
  }
  return parseConfig({ ...stored, ...overrides }, key);
}

async function listDataFiles(ctx: RoleContext, request: PlanRequest): Promise<DataFile[]> {
  const dataStore = ctx.dataStore ?? ctx.store;
  // A listing gives each object's size and ETag: no HEAD request for them.
  const refs: { key: string; name?: string; info?: ObjectInfo }[] =
    request.files ??
    (await dataStore.list(keys.dataPrefix(request.dataset))).filter((o) => o.key.endsWith('.csv')).map((o) => ({ key: o.key, info: o }));
  if (refs.length === 0) {
    throw new DataError('no CSV files to fit', { file: keys.dataPrefix(request.dataset) });
  }
  return Promise.all(refs.map((r) => openDataFile(dataStore, r.key, r.name ?? r.key, r.info)));
}

/** The last model of the dataset, when it was fitted on the same columns and model. */
async function warmStartModel(ctx: RoleContext, manifest: Pick<Manifest, 'dataset' | 'config' | 'plan'>): Promise<PosteriorDocument | undefined> {
  const pointer = await readJsonIfExists<{ posterior: string }>(ctx.store, keys.latestModel(manifest.dataset));
  if (!pointer) return undefined;
  const doc = (await readJsonIfExists<PosteriorDocument>(ctx.store, pointer.value.posterior))?.value;
  if (!doc) return undefined;
  const a = doc.state.config;
  const b = manifest.config;
  // The old run's candidate clustering columns (it may cluster on the relevant ones only).
  const candidates = doc.state.plan.relevance?.map((c) => c.column) ?? doc.state.plan.x;
  // Categorical columns: the same columns with the same levels (a new level changes the model's layout).
  const levelsOf = (plan: ColumnPlan) => plan.select.flatMap((s) => (s.levels ? [[s.column, s.levels]] : []));
  const same =
    JSON.stringify([candidates, doc.state.plan.r, doc.state.plan.target, doc.state.plan.xc, levelsOf(doc.state.plan)]) ===
      JSON.stringify([manifest.plan.x, manifest.plan.r, manifest.plan.target, manifest.plan.xc, levelsOf(manifest.plan)]) &&
    (a.covariateSelection ?? false) === b.covariateSelection &&
    a.family === b.family && a.components === b.components && a.weights === b.weights &&
    a.covariateModel === b.covariateModel && JSON.stringify(a.priors) === JSON.stringify(b.priors) &&
    JSON.stringify(a.sharedCoefficients ?? []) === JSON.stringify(b.sharedCoefficients ?? []);
  return same ? doc : undefined;
}

/**
 * Before the initialization (seconds of one core on a large sample), tell the workers the shards:
 * one prefetch message per worker, each naming SHARDS_PER_WORKER shards, whose binary copies an
 * idle worker stores meanwhile (worker.ts WorkerCache.storeAhead), so the first round decodes them
 * instead of parsing CSV, and the workers' cold starts pass while the planner works (docs/deploy.md
 * §6); and start the aggregator's container the same way (PlanningMessage). No more than one
 * message per worker: a prefetch still queued when the first round starts would race its shard's
 * task, and both would parse the CSV.
 */
async function announceShards(ctx: RoleContext, plan: PrefetchPlan, workers: number): Promise<void> {
  await ctx.store.put(keys.prefetchPlan(plan.dataset, plan.runId), jsonBody(plan), { tags: { ...INTERMEDIATE_TAGS } });
  const messages: PrefetchMessage[] = [];
  for (let s = 0; s < Math.min(plan.shards.length, workers * SHARDS_PER_WORKER); s += SHARDS_PER_WORKER) {
    const shards = plan.shards.slice(s, s + SHARDS_PER_WORKER).map((shard) => shard.index);
    messages.push({ kind: 'prefetch', dataset: plan.dataset, runId: plan.runId, shards });
  }
  await ctx.tasks.sendBatch(messages.map((m) => ({ body: JSON.stringify(m) })));
  const planning: PlanningMessage = { kind: 'planning', dataset: plan.dataset, runId: plan.runId };
  await ctx.updates.send(JSON.stringify(planning), updateSendOptions(planning));
}

/** Workers a run of about `rows` rows keeps busy: one per shard, at most the concurrency. */
function workersUsed(config: ModelConfig, rows: number, workers: number): number {
  return Math.min(workers, Math.ceil(rows / shardRowsFor(config, rows, workers)));
}

/**
 * Before the sample is read, start the worker containers the run will use (WakeMessage): their
 * cold starts (about 1 s each, runtime and wasm kernel) then pass while the planner samples and
 * initializes, instead of after the prefetch messages go out (docs/deploy.md §6).
 */
async function wakeWorkers(ctx: RoleContext, dataset: string, runId: string, count: number): Promise<void> {
  const wake: WakeMessage = { kind: 'wake', dataset, runId };
  await ctx.tasks.sendBatch(Array.from({ length: count }, () => ({ body: JSON.stringify(wake) })));
}

/**
 * Plan a run: list and sample the data, cut the shards, initialize, and send the first round.
 * `kernel` may still be loading: it is first needed to initialize, after the listing, the wakes and
 * the sample (a cold container compiles the wasm kernel meanwhile).
 */
export async function planRun(ctx: RoleContext, request: PlanRequest, kernel: Kernel | Promise<Kernel>): Promise<Manifest> {
  // Handled here, so a kernel that fails to load while planning awaits other things is not an
  // unhandled rejection; it is reported where it is awaited.
  if (kernel instanceof Promise) kernel.catch(() => {});
  const log = ctx.log ?? silentLog;
  const now = request.now ?? new Date();
  const config = request.config;
  const runId = request.runId ?? `${now.toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 6)}`;
  const dataStore = ctx.dataStore ?? ctx.store;

  const files = await listDataFiles(ctx, request);
  const first = files[0];
  const firstBytes = await readOwnedLines(dataStore, first.key, first.dataStart, Math.min(first.size, first.dataStart + 65536), first.dataStart, { fileSize: first.size });
  // Planned on the first lines now, so a wrong column is named before anything else is read;
  // planned again on the sample below, which tells the columns those lines had no values of.
  let columnPlan = planColumns(config, files, firstBytes);
  const workers = Math.max(1, request.workers ?? ctx.workerConcurrency ?? DEFAULT_WORKER_CONCURRENCY);
  if (ctx.wakeWorkers === true) await wakeWorkers(ctx, request.dataset, runId, workersUsed(config, rowsFromFirstWindow(files, firstBytes), workers));
  ctx.onPhase?.({ phase: 'sample', done: 0, total: config.schedule.sampleRows });
  const windows = await readSampleWindows(dataStore, files, firstBytes, config.schedule.sampleRows);
  columnPlan = planColumns(config, files, firstBytes, windows.windows);
  const sample = parseSample(columnPlan, files, windows);
  ctx.onPhase?.({ phase: 'sample', done: sample.parsed.rows, total: sample.parsed.rows });
  if (sample.parsed.rows < 2) {
    const why = sample.parsed.skipped[0];
    const where = why ? ` (first: ${sample.wholeFiles ? `${why.file}:${why.line}: ` : ''}column "${why.column}": ${why.reason})` : '';
    const what = sample.parsed.rows === 1 ? 'only 1 usable row (a fit needs at least 2)' : 'no usable rows: every sampled row was skipped';
    throw new DataError(`${what}${where}`, { file: first.name });
  }
  // The categorical columns' levels are the sample's (sorted), fixed for the run before any worker parses a shard.
  settleLevels(columnPlan, sample.parsed, first.name);

  const shardBytes = Math.max(64, Math.round(shardRowsFor(config, sample.rowEstimate, workers) * sample.bytesPerLine));
  const shards: Shard[] = [];
  files.forEach((f, file) => {
    for (const range of planByteShards(f.size, f.dataStart, shardBytes)) shards.push({ index: shards.length, file, ...range });
  });

  const draft = {
    format: 'clusterwise/manifest@2' as const,
    dataset: request.dataset,
    runId,
    createdAt: now.toISOString(),
    config,
    plan: columnPlan,
    files,
    shards,
    stepWidth: config.schedule.shardsPerStep ?? workers,
    binaryShards: request.binaryShards ?? true,
    assign: config.assignments,
  };
  ctx.onShardsPlanned?.(draft);

  const warm = request.warmStart === false ? undefined : await warmStartModel(ctx, draft);
  let manifest: Manifest;
  let state: GlobalState;
  if (warm) {
    // Keep the old run's standardization so its λ means the same thing; rescale to the new N.
    const old = modelOf(warm);
    manifest = {
      ...draft,
      // The old run's plan: its clustering columns are the relevant ones it chose (relevance.ts).
      plan: warm.state.plan,
      standardization: warm.state.standardization,
      rowEstimate: sample.rowEstimate,
      sample: { rows: sample.parsed.rows, skipped: sample.parsed.skippedCount, elbo: null, restartElbos: [] },
      warmStartFrom: warm.runId,
    };
    state = withUpdatedAlpha(old.spec, scaleToRows(old.spec, old.state, warm.rows, sample.rowEstimate));
    log.info('warm start', { runId, from: warm.runId });
  } else {
    let standardization = standardizationOf(columnPlan, config.family, sample.parsed, first.name);
    const prefetched = ctx.announceShards === true && draft.binaryShards;
    if (prefetched) await announceShards(ctx, { ...draft, standardization }, workers);
    let spec = specOf({ config, plan: columnPlan });
    // Initialization seeds on the sample's complete rows (k-means and hard assignments need every cell; docs/model.md §18).
    const batch = completeRows(toBatch(columnPlan, standardization, sample.parsed));
    if (batch.n < 2) throw new DataError(`too few sampled rows without a missing value to initialize (found ${batch.n} of ${sample.parsed.rows})`, { file: first.name });
    const total = config.schedule.restarts;
    ctx.onPhase?.({ phase: 'initialize', done: 0, total });
    let selection: PlanPhase['selection'];
    const options = {
      restarts: total,
      seed: config.seed,
      onRestart: (done: number) => ctx.onPhase?.({ phase: 'initialize', done, total, ...(selection ? { selection } : {}) }),
      onFit: (fit: number, columns: number) => void (selection = fit > 1 ? { fit, columns, candidates: spec.D } : undefined),
    };
    let plan = columnPlan;
    let init: InitResult;
    const loaded = await kernel;
    if (config.covariateSelection && spec.D > 0) {
      // Which clustering columns carry cluster information; the run clusters on those (relevance.ts).
      const selection = initializeWithRelevance(spec, batch, loaded, options);
      ({ plan, standardization } = narrowToRelevant(columnPlan, standardization, selection.relevant, relevanceOf(columnPlan.x, selection)));
      ({ spec, init } = selection);
    } else {
      init = initialize(spec, batch, loaded, options);
    }
    manifest = {
      ...draft,
      plan,
      standardization,
      rowEstimate: sample.rowEstimate,
      sample: { rows: sample.parsed.rows, skipped: sample.parsed.skippedCount, elbo: init.elbo, restartElbos: init.restartElbos },
      ...(prefetched ? { prefetched } : {}),
    };
    state = withUpdatedAlpha(spec, scaleToRows(spec, init.state, batch.n, sample.rowEstimate));
  }

  const posteriorKey = keys.posterior(request.dataset, runId, 0, PLANNER_WRITER);
  await ctx.store.put(keys.manifest(request.dataset, runId), jsonBody(manifest), { ifNoneMatch: '*' });
  await ctx.store.put(keys.reportSample(request.dataset, runId), jsonBody(sampleRecords(columnPlan, sample.parsed)), { tags: { ...INTERMEDIATE_TAGS } });
  await ctx.store.put(posteriorKey, encodePosterior(specOf(manifest), { version: 0, state, trace: [] }), { tags: { ...INTERMEDIATE_TAGS } });
  const { state: runState, tasks } = initialRunState(manifest, posteriorKey, now, PLANNER_WRITER);
  await ctx.store.put(keys.state(request.dataset, runId), jsonBody(runState), { ifNoneMatch: '*' });
  await sendTasks(ctx.tasks, tasks);
  log.info('run planned', { runId, dataset: request.dataset, files: files.length, shards: shards.length, rowEstimate: sample.rowEstimate });
  return manifest;
}
