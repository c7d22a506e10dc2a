/**
 * Aggregator: the one writer of a run (FIFO group = run id). Folds worker results, applies the
 * natural-gradient step (SVI) or the batch update, versions the posterior, keeps tasks in flight,
 * switches from SVI to batch sweeps, stops at convergence and writes the results (DESIGN.md §3).
 *
 * Crash safety: new posterior versions get unique keys, tasks are sent before the state, and the
 * state is written with If-Match. A losing or crashed aggregator leaves at most orphan versions
 * and orphan tasks, whose results are ignored because their task ids are not in the state.
 */
import { randomUUID } from 'node:crypto';
import { batchUpdate, elboOf, stepSize, sviUpdate } from '../inference/vb.js';
import { derive, type GlobalState } from '../model/posterior.js';
import { renderReport } from '../model/report.js';
import { clusterNumbers, logJacobianPerRow, summarize } from '../model/summary.js';
import { epochOrder, makeTasks, sendTasks } from './dispatch.js';
import { releaseDataset } from './ingest.js';
import { decodeFloat64, encodeFloat64, INTERMEDIATE_TAGS, keys, type RefitMessage, type ResultMessage, type TaskMessage, type UpdateMessage } from './protocol.js';
import {
  decodeState,
  encodeState,
  jsonBody,
  readJson,
  silentLog,
  specOf,
  type Manifest,
  type PosteriorVersion,
  type Progress,
  type RoleContext,
  type RunState,
} from './run.js';

const MAX_SKIPPED_EXAMPLES = 50;

/** A run that ended in this call; when `refitPending`, a refit message was sent to the tasks queue. */
export interface EndedRun {
  dataset: string;
  runId: string;
  status: 'done' | 'failed';
  refitPending: boolean;
}

/** Apply a batch of update messages (any runs); throws if a run's state was written meanwhile. */
export async function handleUpdates(ctx: RoleContext, messages: UpdateMessage[]): Promise<EndedRun[]> {
  const byRun = new Map<string, UpdateMessage[]>();
  for (const m of messages) byRun.set(`${m.dataset}/${m.runId}`, [...(byRun.get(`${m.dataset}/${m.runId}`) ?? []), m]);
  const ended: EndedRun[] = [];
  for (const group of byRun.values()) {
    const end = await handleRunUpdates(ctx, group);
    if (end) ended.push(end);
  }
  return ended;
}

/** Everything one invocation needs about a run. */
interface RunContext {
  ctx: RoleContext;
  manifest: Manifest;
  state: RunState;
  global: GlobalState;
  outbox: TaskMessage[];
  writer: string;
}

async function handleRunUpdates(ctx: RoleContext, messages: UpdateMessage[]): Promise<EndedRun | undefined> {
  const { dataset, runId } = messages[0];
  const manifest = (await readJson<Manifest>(ctx.store, keys.manifest(dataset, runId))).value;
  const stateKey = keys.state(dataset, runId);
  const { value: state, etag } = await readJson<RunState>(ctx.store, stateKey);
  const global = decodeState((await readJson<PosteriorVersion>(ctx.store, state.posteriorKey)).value);
  const run: RunContext = { ctx, manifest, state, global, outbox: [], writer: randomUUID().slice(0, 8) };
  const wasRunning = state.status === 'running';
  for (const message of messages) await apply(run, message);
  state.updatedAt = new Date().toISOString();
  await sendTasks(ctx.tasks, run.outbox);
  await ctx.store.put(stateKey, jsonBody(state), { ifMatch: etag });
  ctx.onProgress?.(progressOf(manifest, state));
  if (!wasRunning || state.status === 'running') return undefined;
  const refitPending = await releaseDataset(ctx, dataset, runId);
  if (refitPending) await ctx.tasks.send(JSON.stringify({ kind: 'refit', dataset } satisfies RefitMessage));
  return { dataset, runId, status: state.status, refitPending };
}

async function apply(run: RunContext, message: UpdateMessage): Promise<void> {
  const { state } = run;
  const log = run.ctx.log ?? silentLog;
  if (state.status !== 'running') return;
  if (message.kind === 'task-failed') {
    if (message.taskId in state.inFlight || message.taskId === 'unknown') {
      fail(run, `task ${message.taskId} failed for good: ${message.reason}`);
    }
    return;
  }
  if (state.applied.includes(message.taskId)) {
    log.info('duplicate result ignored', { runId: message.runId, taskId: message.taskId });
    return;
  }
  if (!(message.taskId in state.inFlight)) {
    log.warn('result of an unknown task ignored', { runId: message.runId, taskId: message.taskId });
    return;
  }
  delete state.inFlight[message.taskId];
  state.applied.push(message.taskId);
  recordShard(run, message);
  if (state.status !== 'running') return;

  if (message.phase === 'assign') {
    if (Object.keys(state.inFlight).length === 0) await finalize(run);
    return;
  }
  fold(state, message, state.version - message.baseVersion);
  if (message.phase === 'svi') await continueSvi(run);
  else if (state.pending.results === run.manifest.shards.length) await completeSweep(run);
}

/** The first report of each shard fixes its row, skip and line counts. */
function recordShard(run: RunContext, message: ResultMessage) {
  const { state, manifest } = run;
  if (state.shards[message.shard]) return;
  state.shards[message.shard] = { rows: message.rows, skipped: message.skipped, lines: message.lines };
  for (const s of message.skippedExamples) {
    if (state.skippedExamples.length >= MAX_SKIPPED_EXAMPLES) break;
    state.skippedExamples.push({ shard: message.shard, ...s });
  }
  if (Object.keys(state.shards).length < manifest.shards.length) return;
  const counts = Object.values(state.shards);
  state.totalRows = counts.reduce((s, c) => s + c.rows, 0);
  const skipped = counts.reduce((s, c) => s + c.skipped, 0);
  const share = skipped / Math.max(1, state.totalRows + skipped);
  if (state.totalRows === 0 || share > manifest.config.schedule.maxSkippedShare) {
    const first = numberedSkipped(manifest, state)[0];
    fail(
      run,
      `${skipped} of ${state.totalRows + skipped} rows are unusable (more than ${manifest.config.schedule.maxSkippedShare * 100}%)` +
        (first ? `; first: ${first.file}:${first.line}: column "${first.column}": ${JSON.stringify(first.value)} ${first.reason}` : ''),
    );
  }
}

function fold(state: RunState, message: ResultMessage, staleness: number) {
  const p = state.pending;
  const stats = decodeFloat64(message.stats!);
  if (p.stats) {
    const sum = decodeFloat64(p.stats);
    for (let i = 0; i < sum.length; i++) sum[i] += stats[i];
    p.stats = encodeFloat64(sum);
  } else p.stats = message.stats!;
  p.rows += message.rows;
  p.logLik += message.logLik;
  p.results += 1;
  p.maxStaleness = Math.max(p.maxStaleness, staleness);
}

function clearPending(state: RunState) {
  state.pending = { stats: null, rows: 0, logLik: 0, results: 0, maxStaleness: 0 };
}

async function newVersion(run: RunContext, global: GlobalState) {
  const { state, manifest } = run;
  state.version += 1;
  state.posteriorKey = keys.posterior(manifest.dataset, manifest.runId, state.version, run.writer);
  await run.ctx.store.put(state.posteriorKey, jsonBody(encodeState(state.version, global)), { tags: { ...INTERMEDIATE_TAGS } });
  run.global = global;
}

/** N: exact once every shard has reported, the planner's estimate before. */
function totalRows(run: RunContext): number {
  return run.state.totalRows ?? run.manifest.rowEstimate;
}

async function continueSvi(run: RunContext) {
  const { state, manifest } = run;
  const schedule = manifest.config.schedule;
  const spec = specOf(manifest);
  const inFlight = () => Object.keys(state.inFlight).length;
  const sviOver = () => state.queue.length === 0 && state.round + 1 >= schedule.sviEpochs;
  const p = state.pending;
  if (p.results >= schedule.shardsPerStep || (sviOver() && inFlight() === 0 && p.results > 0)) {
    // Staleness beyond what the pipeline's depth implies is damped (DESIGN.md §2, stale updates).
    const expected = Math.ceil(manifest.inFlight / schedule.shardsPerStep);
    const rho = stepSize(state.step, schedule.delay, schedule.forgettingRate) * Math.min(1, (expected + 1) / (p.maxStaleness + 1));
    const n = totalRows(run);
    // An estimate: the minibatch's logsumexp terms scaled to N, minus the global KL.
    const elbo = elboOf(spec, run.global, (n / p.rows) * p.logLik);
    state.trace.push({ phase: 'svi', round: state.round, version: state.version, elbo, staleness: p.maxStaleness, rho });
    const next = sviUpdate(spec, run.global, decodeFloat64(p.stats!), p.rows, n, rho);
    state.step += 1;
    clearPending(state);
    await newVersion(run, next);
  }
  // Keep the pipeline full.
  const wanted: number[] = [];
  while (inFlight() + wanted.length < manifest.inFlight) {
    if (state.queue.length === 0) {
      if (state.round + 1 >= schedule.sviEpochs) break;
      state.round += 1;
      state.queue = epochOrder(manifest, state.round);
    }
    wanted.push(state.queue.shift()!);
  }
  run.outbox.push(...makeTasks(manifest, state, wanted, 'svi'));
  if (sviOver() && inFlight() === 0 && state.pending.results === 0) {
    state.phase = 'batch';
    state.round = 0;
    run.outbox.push(...makeTasks(manifest, state, manifest.shards.map((s) => s.index), 'batch'));
  }
}

async function completeSweep(run: RunContext) {
  const { state, manifest } = run;
  const schedule = manifest.config.schedule;
  const spec = specOf(manifest);
  const elbo = elboOf(spec, run.global, state.pending.logLik);
  const previous = [...state.trace].reverse().find((t) => t.phase === 'batch');
  state.trace.push({ phase: 'batch', round: state.round, version: state.version, elbo });
  const converged = previous !== undefined && Math.abs(elbo - previous.elbo) <= schedule.tolerance * Math.abs(elbo);
  if (converged || state.round + 1 >= schedule.maxSweeps) {
    // Keep the version whose ELBO was just measured: the reported posterior and ELBO agree.
    state.converged = converged;
    clearPending(state);
    await finish(run);
    return;
  }
  const next = batchUpdate(spec, run.global, decodeFloat64(state.pending.stats!));
  clearPending(state);
  state.round += 1;
  await newVersion(run, next);
  run.outbox.push(...makeTasks(manifest, state, manifest.shards.map((s) => s.index), 'batch'));
}

async function finish(run: RunContext) {
  const { state, manifest } = run;
  if (!manifest.assign) return finalize(run);
  state.phase = 'assign';
  const clusterOf = clusterNumbers(derive(specOf(manifest), run.global));
  let offset = 0;
  for (const shard of manifest.shards) {
    const [task] = makeTasks(manifest, state, [shard.index], 'assign', clusterOf);
    task.rowOffset = offset;
    offset += state.shards[shard.index].rows;
    run.outbox.push(task);
  }
}

/** Skipped-row examples with their line numbers in the file (every shard's line count is known). */
export function numberedSkipped(manifest: Manifest, state: RunState) {
  const firstLine = new Map<number, number>();
  const next = new Map<number, number>();
  for (const shard of manifest.shards) {
    const line = next.get(shard.file) ?? 2; // line 1 is the header
    firstLine.set(shard.index, line);
    next.set(shard.file, line + (state.shards[shard.index]?.lines ?? 0));
  }
  return state.skippedExamples.map(({ shard, line, ...rest }) => ({ ...rest, line: (firstLine.get(shard) ?? 0) + line }));
}

async function finalize(run: RunContext) {
  const { state, manifest, ctx } = run;
  const counts = Object.values(state.shards);
  const rows = counts.reduce((s, c) => s + c.rows, 0);
  const skippedRows = counts.reduce((s, c) => s + c.skipped, 0);
  const lastBatch = [...state.trace].reverse().find((t) => t.phase === 'batch');
  const doc = summarize({
    dataset: manifest.dataset,
    runId: manifest.runId,
    config: manifest.config,
    plan: manifest.plan,
    standardization: manifest.standardization,
    state: run.global,
    rows,
    skippedRows,
    elboStandardized: lastBatch?.elbo ?? NaN,
    converged: state.converged,
  });
  const skipped = numberedSkipped(manifest, state);
  const trace = state.trace.map((t) => ({ ...t, elbo: inDataUnits(manifest, state, t.elbo) }));
  const posteriorKey = keys.result(manifest.dataset, manifest.runId, 'posterior.json');
  await ctx.store.put(posteriorKey, JSON.stringify({ ...doc, skipped, trace }, null, 1), { contentType: 'application/json' });
  await ctx.store.put(keys.result(manifest.dataset, manifest.runId, 'report.html'), renderReport(doc, trace, skipped), {
    contentType: 'text/html',
  });
  await ctx.store.put(
    keys.latestModel(manifest.dataset),
    jsonBody({ runId: manifest.runId, posterior: posteriorKey, finishedAt: new Date().toISOString() }),
  );
  state.status = 'done';
  state.phase = 'done';
  state.resultKey = posteriorKey;
}

function fail(run: RunContext, reason: string) {
  run.state.status = 'failed';
  run.state.failure = reason;
  (run.ctx.log ?? silentLog).error('run failed', { runId: run.manifest.runId, reason });
}

/**
 * An ELBO of the standardized data (what the trace records) in the data's own units, as
 * posterior.json reports it: minus N Σ ln(deviation) (summary.ts logJacobianPerRow).
 */
function inDataUnits(manifest: Manifest, state: RunState, elbo: number): number {
  return elbo - (state.totalRows ?? manifest.rowEstimate) * logJacobianPerRow(specOf(manifest), manifest.standardization);
}

export function progressOf(manifest: Manifest, state: RunState): Progress {
  const schedule = manifest.config.schedule;
  const counts = Object.values(state.shards);
  const inFlight = Object.keys(state.inFlight).length;
  const shards = manifest.shards.length;
  const shardsDone =
    state.phase === 'svi' ? shards - state.queue.length - inFlight : state.phase === 'done' ? shards : shards - inFlight;
  const last = state.trace[state.trace.length - 1];
  return {
    dataset: manifest.dataset,
    runId: manifest.runId,
    status: state.status,
    phase: state.phase,
    round: state.round,
    rounds: state.phase === 'svi' ? schedule.sviEpochs : schedule.maxSweeps,
    shardsDone: Math.max(0, shardsDone),
    shards,
    elbo: last ? inDataUnits(manifest, state, last.elbo) : null,
    elboFrom: last ? (last.phase === 'batch' ? `sweep ${last.round + 1}` : `SVI epoch ${last.round + 1} (estimate)`) : null,
    rows: counts.reduce((s, c) => s + c.rows, 0),
    skipped: counts.reduce((s, c) => s + c.skipped, 0),
    converged: state.converged,
    ...(state.failure ? { failure: state.failure } : {}),
  };
}

