/**
 * Aggregator: the one writer of a run (FIFO group = run id). Its decisions are serial, its
 * arithmetic is not: workers reduce each round to a few group sums (worker.ts), and the
 * aggregator, woken once per round, adds those, applies the natural-gradient step (SVI) or the
 * batch update, writes the next posterior version, starts the next round, and at the end writes
 * the results (docs/deploy.md §6, docs/model.md §6–7).
 *
 * Crash safety and idempotency: versions and rounds carry the writer's id, tasks are sent before
 * the state, and the state is written with If-Match. A round counts only when it is the state's
 * current round, so a duplicate completion, a stale one, or one of a losing aggregator's orphan
 * rounds changes nothing; a crashed aggregator's message is redelivered and redone.
 */
import { randomUUID } from 'node:crypto';
import pMap from 'p-map';
import { formatSkipped } from '../data/csv.js';
import { ClusterwiseError, describeError } from '../errors.js';
import { acceptMove, proposeMoves, type SweepResult } from '../inference/moves.js';
import { batchUpdate, elboOf, MAX_STEP_HALVINGS, stepSize, sviUpdate } from '../inference/vb.js';
import { familyOf } from '../model/families/index.js';
import { derive, type GlobalState } from '../model/posterior.js';
import type { ReportFigures } from '../model/report.js';
import { clusterNumbers, logJacobian, summarize } from '../model/summary.js';
import { unpackSymmetric } from '../model/spec.js';
import { decodeBinary } from './binary.js';
import { sendTasks, startRound } from './dispatch.js';
import { releaseDataset } from './ingest.js';
import { groupCount, INTERMEDIATE_TAGS, keys, type PlanningMessage, type RefitMessage, type TaskMessage, type UpdateMessage } from './protocol.js';
import {
  encodePosterior,
  isSeen,
  jsonBody,
  markSeen,
  readJson,
  readJsonIfExists,
  readPosterior,
  seenBits,
  silentLog,
  specOf,
  type Manifest,
  type MovesState,
  type Progress,
  type ReportPort,
  type RoleContext,
  type RoundState,
  type RunState,
  type TraceEntry,
} from './run.js';
import { addInto, MAX_SKIPPED_EXAMPLES, READ_CONCURRENCY, type GroupReport, type ShardCountsRow } from './worker.js';

/** A run that ended in this call; when `refitPending`, a refit message was sent to the tasks queue. */
export interface EndedRun {
  dataset: string;
  runId: string;
  status: 'done' | 'failed';
  refitPending: boolean;
}

/** The update messages that change a run (a planning message only starts a container). */
type RunUpdate = Exclude<UpdateMessage, PlanningMessage>;

/**
 * Apply a delivery of update messages (any runs): one read and at most one conditional write of
 * each run's state. Throws if a run's state was written meanwhile (the delivery is then redone).
 */
export async function handleUpdates(ctx: RoleContext, messages: UpdateMessage[]): Promise<EndedRun[]> {
  if (messages.some((m) => m.kind === 'planning')) await warmReport(ctx);
  const byRun = new Map<string, RunUpdate[]>();
  for (const m of messages) if (m.kind !== 'planning') byRun.set(`${m.dataset}/${m.runId}`, [...(byRun.get(`${m.dataset}/${m.runId}`) ?? []), m]);
  const ended: EndedRun[] = [];
  for (const group of byRun.values()) {
    const end = await handleRunUpdates(ctx, group);
    if (end) ended.push(end);
  }
  return ended;
}

/**
 * The report in this thread (a Lambda container's). vega is loaded when first needed, so that a
 * delivery that renders nothing starts without it: on a run's planning message, or at the end.
 * On the planning message the container also renders a throwaway report (report-warmup.ts) while
 * it has nothing else to do (the run's first round is seconds away), so the render in the run's
 * last invocation, on the run's critical path, is a warm one (docs/deploy.md §6).
 */
let reportModule: Promise<typeof import('../model/report.js')> | undefined;
export const inThreadReport: ReportPort = {
  async warm() {
    if (reportModule) return void (await reportModule);
    reportModule = import('../model/report-warmup.js').then((warmup) => {
      warmup.warmReport();
      return import('../model/report.js');
    });
    await reportModule;
  },
  async render(...args) {
    return (await (reportModule ??= import('../model/report.js'))).renderReport(...args);
  },
  async figures(...args) {
    return (await (reportModule ??= import('../model/report.js'))).renderFigures(...args);
  },
};

/** A warm-up is advisory: one that fails is logged, and the render at the end loads what it needs. */
async function warmReport(ctx: RoleContext): Promise<void> {
  try {
    await (ctx.report ?? inThreadReport).warm();
  } catch (error) {
    if (ctx.report === undefined) reportModule = undefined;
    (ctx.log ?? silentLog).warn('report warm-up failed', { reason: describeError(error) });
  }
}

/**
 * Objects a run writes once and never changes, read once per process (a Lambda container, the
 * local runner) and kept for the last `runs` or so runs; a read that fails is tried again next time.
 */
function readOncePerProcess<T>(runs: number): (key: string, read: () => Promise<T>) => Promise<T> {
  const kept = new Map<string, Promise<T>>();
  return (key, read) => {
    let value = kept.get(key);
    if (!value) {
      if (kept.size >= runs) kept.clear();
      value = read();
      kept.set(key, value);
      value.catch(() => kept.delete(key));
    }
    return value;
  };
}

const manifests = readOncePerProcess<Manifest>(16);
function manifestOf(ctx: RoleContext, dataset: string, runId: string): Promise<Manifest> {
  const key = keys.manifest(dataset, runId);
  return manifests(key, async () => (await readJson<Manifest>(ctx.store, key)).value);
}

/** Everything one invocation needs about a run. */
interface RunContext {
  ctx: RoleContext;
  manifest: Manifest;
  state: RunState;
  outbox: TaskMessage[];
  writer: string;
  changed: boolean;
  /** A version this invocation published that the run may end on: its figures are rendered ahead. */
  ahead?: { posteriorKey: string; state: GlobalState };
}

async function handleRunUpdates(ctx: RoleContext, messages: RunUpdate[]): Promise<EndedRun | undefined> {
  const { dataset, runId } = messages[0];
  const stateKey = keys.state(dataset, runId);
  // Independent reads: one request's latency, not two (the manifest is read once per container).
  const [manifest, { value: state, etag }] = await Promise.all([manifestOf(ctx, dataset, runId), readJson<RunState>(ctx.store, stateKey)]);
  const run: RunContext = { ctx, manifest, state, outbox: [], writer: randomUUID().slice(0, 8), changed: false };
  const wasRunning = state.status === 'running';
  for (const message of messages) await apply(run, message);
  if (run.changed) {
    state.updatedAt = new Date().toISOString();
    await sendTasks(ctx.tasks, run.outbox);
    await ctx.store.put(stateKey, jsonBody(state), { ifMatch: etag });
    ctx.onProgress?.(progressOf(manifest, state));
    // The next round is under way: the time until its completion is the aggregator's to spare.
    if (run.ahead && state.status === 'running') await renderAhead(run, run.ahead);
  }
  if (state.status === 'running') return undefined;
  // Release the dataset when the run ended now, and again on a redelivery after a crash that
  // came between the state write and the release or the refit's send (once released, releaseDataset
  // only reports a refit still owed; a copy sent twice is dropped by its `after`).
  const refitPending = await releaseDataset(ctx, dataset, runId);
  if (refitPending) await ctx.tasks.send(JSON.stringify({ kind: 'refit', dataset, after: runId } satisfies RefitMessage));
  return wasRunning || refitPending ? { dataset, runId, status: state.status, refitPending } : undefined;
}

async function apply(run: RunContext, message: RunUpdate): Promise<void> {
  const { state } = run;
  const log = run.ctx.log ?? silentLog;
  if (state.status !== 'running') return;
  const current = state.round?.id;
  if (message.kind === 'run-failed') return fail(run, message.reason);
  if (message.kind === 'task-failed') {
    // A task of the current round is lost, or one too broken to say which (its body named the run
    // only): the round cannot complete. A task of another round (an orphan, a stale one) is not missed.
    const ours = message.taskId === 'unknown' || message.roundId === current || message.taskId.startsWith(`${current}-t`);
    if (ours) return fail(run, `task ${message.taskId} failed for good: ${message.reason}`);
    log.warn('failure of a task outside the current round ignored', { runId: message.runId, taskId: message.taskId });
    return;
  }
  if (message.roundId !== current) {
    log.info('completion of a finished or unknown round ignored', { runId: message.runId, roundId: message.roundId });
    return;
  }
  await completeRound(run);
}

/** The round's total: its group sums added in group order (the same bits whoever wrote them). */
interface RoundTotal {
  stats: Float64Array | undefined;
  rows: number;
  logLik: number;
  groups: GroupReport[];
}

async function readRoundTotal(run: RunContext, round: Pick<RoundState, 'id' | 'tasks' | 'fanIn'> = run.state.round!): Promise<RoundTotal> {
  const { manifest, ctx } = run;
  const spec = specOf(manifest);
  const groups = await pMap(
    Array.from({ length: groupCount(round) }, (_, g) => keys.groupSum(manifest.dataset, manifest.runId, round.id, g)),
    async (key) => decodeBinary<GroupReport>((await ctx.store.get(key)).body, key),
    { concurrency: READ_CONCURRENCY },
  );
  const total: RoundTotal = { stats: undefined, rows: 0, logLik: 0, groups: groups.map((g) => g.header) };
  for (const { header, arrays } of groups) {
    total.rows += header.rows;
    total.logLik += header.logLik;
    if (arrays.stats) total.stats = total.stats ? addInto(total.stats, arrays.stats as Float64Array) : Float64Array.from(arrays.stats);
  }
  // Each task's result was finite (worker.ts), but their sum may overflow: the run cannot go on.
  if (!Number.isFinite(total.logLik) || (total.stats && !total.stats.every(Number.isFinite))) throw new NonFiniteSumError(round.id);
  if (total.stats) total.stats = unpackSymmetric(spec, total.stats);
  return total;
}

/** A round's summed statistics overflowed: permanent, the same sums overflow again (update-delivery.ts fails the run). */
export class NonFiniteSumError extends ClusterwiseError {
  constructor(roundId: string) {
    super(`round ${roundId}: the sum of the shards' statistics is not finite; values in the data are too large for the model`);
    this.name = 'NonFiniteSumError';
  }
}

async function completeRound(run: RunContext): Promise<void> {
  const { state, manifest } = run;
  const round = state.round!;
  const spec = specOf(manifest);
  // The round's sums and the version its tasks used are independent reads: one latency, not two.
  const [total, current] = await Promise.all([readRoundTotal(run), readPosterior(run.ctx.store, spec, state.posteriorKey)]);
  run.changed = true;
  await recordShards(run, total);
  if (state.status !== 'running') return;
  const schedule = manifest.config.schedule;
  const trace = current.trace;
  const S = manifest.shards.length;

  if (round.phase === 'assign') return finalize(run, current.state, trace, state.posteriorKey);

  if (round.phase === 'svi') {
    // Hoffman et al. 2013 eq. 27 with |B| = the round's rows: every task of the round saw the same version.
    const n = totalRows(run);
    const rho = stepSize(state.step, schedule.delay, schedule.forgettingRate);
    const elbo = elboOf(spec, current.state, (n / total.rows) * total.logLik); // an estimate
    const next = sviUpdate(spec, current.state, total.stats!, total.rows, n, rho);
    state.step += 1;
    await newVersion(run, next, [...trace, { phase: 'svi', round: round.number, version: state.version, elbo, rho }]);
    const offset = round.offset + round.tasks;
    const epoch = offset >= S ? round.number + 1 : round.number;
    if (epoch < schedule.sviEpochs) {
      const start = offset >= S ? 0 : offset;
      run.outbox.push(...startRound(manifest, state, { phase: 'svi', number: epoch, offset: start, tasks: Math.min(manifest.stepWidth, S - start), writer: run.writer }));
    } else {
      run.outbox.push(...startRound(manifest, state, { phase: 'batch', number: 0, writer: run.writer }));
    }
    return;
  }

  // A batch sweep: its ELBO is exact for the version every task used.
  const elbo = elboOf(spec, current.state, total.logLik);
  const moves = state.moves ?? { exclude: [] };
  const batches = trace.filter((t) => t.phase === 'batch');
  if (moves.candidate && moves.base) {
    // The sweep evaluated a move's candidate, published instead of the batch update of the sweep
    // before (the last entry of its trace): kept only if the ELBO rose (moves.ts contract).
    const base = batches[batches.length - 1];
    // A natural-gradient step is kept when the ELBO does not fall (beyond the tolerance, the float32
    // sums' noise near convergence); a move must raise it.
    const kept = isStep(moves.candidate)
      ? elbo >= base.elbo - schedule.tolerance * Math.abs(base.elbo)
      : acceptMove(base.elbo, elbo);
    if (!kept) {
      // Rejected: the candidate's sweep is spent and stays out of the trace; decide again from the
      // sweep before, with its sums read again, as if this sweep had not happened.
      const [from, sums] = await Promise.all([readPosterior(run.ctx.store, spec, moves.base.posteriorKey), readRoundTotal(run, moves.base.round)]);
      return afterSweep(run, {
        state: from.state,
        stats: sums.stats!,
        elbo: base.elbo,
        previousElbo: batches[batches.length - 2]?.elbo,
        trace,
        base: moves.base,
        exclude: [...moves.exclude, moves.candidate],
      });
    }
    moves.exclude = [];
  }
  const entry: TraceEntry = { phase: 'batch', round: round.number, version: state.version, elbo };
  return afterSweep(run, {
    state: current.state,
    stats: total.stats!,
    elbo,
    previousElbo: batches[batches.length - 1]?.elbo,
    trace: [...trace, entry],
    base: { round: { id: round.id, tasks: round.tasks, fanIn: round.fanIn }, posteriorKey: state.posteriorKey },
    exclude: moves.exclude,
  });
}

/** A batch sweep that counts: the state it evaluated, its sums, its ELBO and the one before. */
interface Sweep extends SweepResult {
  /** The trace up to and including this sweep. */
  trace: TraceEntry[];
  /** Where the sweep's sums and state can be read again. */
  base: NonNullable<MovesState['base']>;
  /** Move keys rejected since the last accepted move. */
  exclude: string[];
}

/**
 * After a sweep: sweep a move's candidate when there is one (Hughes & Sudderth 2013; moves.ts),
 * else stop when converged or out of sweeps, else the batch update. `converged` is only set when
 * no candidate is left, so a converged run has tried its moves.
 */
async function afterSweep(run: RunContext, sweep: Sweep): Promise<void> {
  const { state, manifest } = run;
  const spec = specOf(manifest);
  const schedule = manifest.config.schedule;
  const number = state.round!.number;
  const last = number + 1 >= schedule.maxSweeps;
  const converged =
    sweep.previousElbo !== undefined && Math.abs(sweep.elbo - sweep.previousElbo) <= schedule.tolerance * Math.abs(sweep.elbo);
  const [candidate] = last ? [] : proposeMoves(spec, sweep, { exclude: new Set(sweep.exclude) });
  if (candidate) {
    state.moves = { exclude: sweep.exclude, candidate: candidate.key, base: sweep.base };
    await newVersion(run, candidate.state, sweep.trace, { ahead: true });
    run.outbox.push(...startRound(manifest, state, { phase: 'batch', number: number + 1, writer: run.writer }));
    return;
  }
  state.moves = sweep.exclude.length ? { exclude: sweep.exclude } : undefined;
  if (converged || last) {
    // Keep the version whose ELBO was measured last: the reported posterior and ELBO agree.
    state.converged = converged;
    return finish(run, sweep.state, sweep.trace, sweep.base.posteriorKey);
  }
  if (familyOf(spec.family).exactUpdate) {
    await newVersion(run, batchUpdate(spec, sweep.state, sweep.stats), sweep.trace, { ahead: true });
  } else {
    // A natural-gradient step (non-conjugate family) may overshoot. As in batchVb (vb.ts), it is
    // tried as a candidate, λ + t (λ0 + S − λ), and halved while its sweep's ELBO falls: the
    // rejected `step:h` keys in `exclude` count the halvings.
    const halvings = sweep.exclude.filter(isStep).length;
    if (halvings > MAX_STEP_HALVINGS) {
      // No step short enough raises the ELBO: this is its maximum along the step (batchVb stops too).
      state.converged = true;
      return finish(run, sweep.state, sweep.trace, sweep.base.posteriorKey);
    }
    state.moves = { exclude: sweep.exclude, candidate: `${STEP_KEY}${halvings}`, base: sweep.base };
    await newVersion(run, sviUpdate(spec, sweep.state, sweep.stats, 1, 1, 2 ** -halvings), sweep.trace, { ahead: true });
  }
  run.outbox.push(...startRound(manifest, state, { phase: 'batch', number: number + 1, writer: run.writer }));
}

/** Candidate keys of a non-conjugate family's batch step, `step:<halvings>` (no move's key starts so). */
const STEP_KEY = 'step:';
const isStep = (key: string) => key.startsWith(STEP_KEY);

/**
 * Shards reported for the first time: their counts go to a `counts/` object of this round (read
 * again only at the end), the state keeps a bitmap and the sums. Once every shard has reported,
 * N is exact and the share of skipped rows is checked.
 */
async function recordShards(run: RunContext, total: RoundTotal) {
  const { state, manifest } = run;
  const seen = seenBits(manifest, state);
  const fresh: ShardCountsRow[] = [];
  const freshShards = new Set<number>();
  for (const group of total.groups) {
    for (const counts of group.shards) {
      const [shard, rows, skipped, , missing] = counts;
      if (isSeen(seen, shard)) continue;
      markSeen(seen, shard);
      fresh.push(counts);
      freshShards.add(shard);
      state.seen.count += 1;
      state.seen.rows += rows;
      state.seen.skipped += skipped;
      for (const [column, count] of Object.entries(missing ?? {})) (state.seen.missing ??= {})[column] = (state.seen.missing[column] ?? 0) + count;
    }
    for (const example of group.skippedExamples) {
      if (state.skippedExamples.length < MAX_SKIPPED_EXAMPLES && freshShards.has(example.shard)) state.skippedExamples.push(example);
    }
  }
  if (fresh.length === 0) return;
  state.seen.shards = seen.toString('base64');
  await run.ctx.store.put(keys.shardCounts(manifest.dataset, manifest.runId, state.round!.id), jsonBody(fresh));
  if (state.seen.count < manifest.shards.length) return;
  state.totalRows = state.seen.rows;
  const { rows, skipped } = state.seen;
  const share = skipped / Math.max(1, rows + skipped);
  if (rows === 0 || share > manifest.config.schedule.maxSkippedShare) {
    const first = numberedSkipped(manifest, state, await readShardCounts(run))[0];
    fail(
      run,
      `${skipped} of ${rows + skipped} rows are unusable (more than ${manifest.config.schedule.maxSkippedShare * 100}%)` +
        (first ? `; first: ${formatSkipped(first)}` : ''),
    );
  }
}

/** Rows, skipped rows and lines of every shard, from the run's `counts/` objects. */
async function readShardCounts(run: RunContext): Promise<Map<number, { rows: number; skipped: number; lines: number }>> {
  const { ctx, manifest } = run;
  const objects = await ctx.store.list(keys.shardCountsPrefix(manifest.dataset, manifest.runId));
  const parts = await pMap(objects, async (o) => (await readJson<ShardCountsRow[]>(ctx.store, o.key)).value, {
    concurrency: READ_CONCURRENCY,
  });
  const counts = new Map<number, { rows: number; skipped: number; lines: number }>();
  for (const part of parts) for (const [shard, rows, skipped, lines] of part) if (!counts.has(shard)) counts.set(shard, { rows, skipped, lines });
  return counts;
}

/** Publish the next version; `ahead`: the run may end on it (a batch sweep evaluates it next). */
async function newVersion(run: RunContext, global: GlobalState, trace: TraceEntry[], options: { ahead?: boolean } = {}) {
  const { state, manifest } = run;
  state.version += 1;
  state.posteriorKey = keys.posterior(manifest.dataset, manifest.runId, state.version, run.writer);
  state.latest = trace[trace.length - 1] ?? null;
  await run.ctx.store.put(state.posteriorKey, encodePosterior(specOf(manifest), { version: state.version, state: global, trace }), {
    tags: { ...INTERMEDIATE_TAGS },
  });
  if (options.ahead) run.ahead = { posteriorKey: state.posteriorKey, state: global };
}

/** N: exact once every shard has reported, the planner's estimate before. */
function totalRows(run: RunContext): number {
  return run.state.totalRows ?? run.manifest.rowEstimate;
}

/** After the last sweep, on the version at `posteriorKey`: the assignment pass when asked for, else the results. */
async function finish(run: RunContext, global: GlobalState, trace: TraceEntry[], posteriorKey: string) {
  const { state, manifest } = run;
  if (!manifest.assign) return finalize(run, global, trace, posteriorKey);
  // The same λ as a new version, so the trace's last sweep travels with it to the end (its report's figures too).
  await newVersion(run, global, trace, { ahead: true });
  const counts = await readShardCounts(run);
  const rowOffsets = new Map<number, number>();
  let offset = 0;
  for (const shard of manifest.shards) {
    rowOffsets.set(shard.index, offset);
    offset += counts.get(shard.index)?.rows ?? 0;
  }
  const clusterOf = clusterNumbers(derive(specOf(manifest), global));
  run.outbox.push(...startRound(manifest, state, { phase: 'assign', number: 0, writer: run.writer, clusterOf, rowOffsets }));
}

/** Skipped-row examples with their line numbers in the file (every shard's line count is known). */
export function numberedSkipped(manifest: Manifest, state: RunState, counts: Map<number, { lines: number }>) {
  const firstLine = new Map<number, number>();
  const next = new Map<number, number>();
  for (const shard of manifest.shards) {
    const line = next.get(shard.file) ?? 2; // line 1 is the header
    firstLine.set(shard.index, line);
    next.set(shard.file, line + (counts.get(shard.index)?.lines ?? 0));
  }
  return state.skippedExamples.map(({ shard, line, ...rest }) => ({ ...rest, line: (firstLine.get(shard) ?? 0) + line }));
}

/** The posterior document of `global` (summary.ts); its ELBO and convergence are the run's last. */
function summaryOf(run: RunContext, global: GlobalState, elboStandardized: number) {
  const { state, manifest } = run;
  return summarize({
    dataset: manifest.dataset,
    runId: manifest.runId,
    config: manifest.config,
    plan: manifest.plan,
    standardization: manifest.standardization,
    state: global,
    rows: state.seen.rows,
    skippedRows: state.seen.skipped,
    ...(state.seen.missing ? { missingValues: state.seen.missing } : {}),
    elboStandardized,
    converged: state.converged,
  });
}

/** The planner's sample of rows for the report (the round's figures and the end read it). */
const reportSamples = readOncePerProcess<Record<string, number>[] | undefined>(4);
function reportSampleOf(run: RunContext): Promise<Record<string, number>[] | undefined> {
  const key = keys.reportSample(run.manifest.dataset, run.manifest.runId);
  return reportSamples(key, async () => (await readJsonIfExists<Record<string, number>[]>(run.ctx.store, key))?.value);
}

/** Figures rendered ahead, by the key of their posterior version (this container's: the last two). */
const figuresAhead = new Map<string, ReportFigures>();

/**
 * Render the report's figures of a version the run may end on, while the round that decides it
 * runs (docs/deploy.md §6): if it ends there, the render at the end only adds the trace's parts.
 * Only once every shard has reported (the figures hold the row counts), only where the report port
 * renders figures, and advisory: a failure is logged, and the render at the end does it all.
 */
async function renderAhead(run: RunContext, version: NonNullable<RunContext['ahead']>): Promise<void> {
  const report = run.ctx.report ?? inThreadReport;
  if (!report.figures || run.state.seen.count < run.manifest.shards.length) return;
  try {
    const figures = await report.figures(summaryOf(run, version.state, NaN), { sample: await reportSampleOf(run) });
    if (figuresAhead.size >= 2) figuresAhead.delete(figuresAhead.keys().next().value!);
    figuresAhead.set(version.posteriorKey, figures);
  } catch (error) {
    (run.ctx.log ?? silentLog).warn('report figures ahead failed', { runId: run.manifest.runId, reason: describeError(error) });
  }
}

/** The results of the version at `versionKey`: posterior.json, report.html, and models/<name>/latest.json. */
async function finalize(run: RunContext, global: GlobalState, trace: TraceEntry[], versionKey: string) {
  const { state, manifest, ctx } = run;
  const lastBatch = [...trace].reverse().find((t) => t.phase === 'batch');
  const doc = summaryOf(run, global, lastBatch?.elbo ?? NaN);
  // Independent requests go out together: the shard counts with the report's sample, posterior.json
  // with report.html (rendered first: in this thread the render would hold a request's sending up).
  // latest.json points at posterior.json, so it comes after.
  const [counts, sample] = await Promise.all([readShardCounts(run), reportSampleOf(run)]);
  const skipped = numberedSkipped(manifest, state, counts);
  const shownTrace = trace.map((t) => ({ ...t, elbo: inDataUnits(manifest, state, t.elbo) }));
  const posteriorKey = keys.result(manifest.dataset, manifest.runId, 'posterior.json');
  const files = manifest.files.map((f) => ({ name: f.name, bytes: f.size }));
  const report = ctx.report ?? inThreadReport;
  const html = await report.render(doc, shownTrace, skipped, { sample, files }, figuresAhead.get(versionKey));
  await Promise.all([
    ctx.store.put(posteriorKey, JSON.stringify({ ...doc, skipped, trace: shownTrace }, null, 1), { contentType: 'application/json' }),
    ctx.store.put(keys.result(manifest.dataset, manifest.runId, 'report.html'), html, { contentType: 'text/html' }),
  ]);
  await ctx.store.put(
    keys.latestModel(manifest.dataset),
    jsonBody({ runId: manifest.runId, posterior: posteriorKey, finishedAt: new Date().toISOString() }),
  );
  figuresAhead.delete(versionKey);
  state.status = 'done';
  state.phase = 'done';
  state.round = null;
  state.latest = lastBatch ?? state.latest;
  state.resultKey = posteriorKey;
}

function fail(run: RunContext, reason: string) {
  run.changed = true;
  run.state.status = 'failed';
  run.state.failure = reason;
  run.state.round = null;
  (run.ctx.log ?? silentLog).error('run failed', { runId: run.manifest.runId, reason });
}

/**
 * An ELBO of the standardized data (what the trace records) in the data's own units, as
 * posterior.json reports it: minus N Σ ln(deviation) (summary.ts logJacobianPerRow).
 */
function inDataUnits(manifest: Manifest, state: RunState, elbo: number): number {
  return elbo - logJacobian(specOf(manifest), manifest.standardization, manifest.plan, state.totalRows ?? manifest.rowEstimate, state.seen.missing);
}

/** What `status` and the progress bar show; `tasksDone` of the current round when the caller counts them. */
export function progressOf(manifest: Manifest, state: RunState, tasksDone = 0): Progress {
  const schedule = manifest.config.schedule;
  const shards = manifest.shards.length;
  const round = state.round;
  const last = state.latest;
  return {
    dataset: manifest.dataset,
    runId: manifest.runId,
    status: state.status,
    phase: state.phase,
    round: round?.number ?? 0,
    rounds: state.phase === 'svi' ? schedule.sviEpochs : schedule.maxSweeps,
    shardsDone: state.phase === 'done' ? shards : round ? Math.min(round.offset + tasksDone, shards) : 0,
    shards,
    elbo: last ? inDataUnits(manifest, state, last.elbo) : null,
    elboFrom: last ? (last.phase === 'batch' ? `sweep ${last.round + 1}` : `SVI epoch ${last.round + 1} (estimate)`) : null,
    rows: state.seen.rows,
    skipped: state.seen.skipped,
    converged: state.converged,
    ...(state.failure ? { failure: state.failure } : {}),
  };
}
