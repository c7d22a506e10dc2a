/**
 * Starting runs on AWS (and from `clusterwise submit`): an upload, the schedule or a direct
 * request asks for a refit of a dataset. At most one run per dataset is active; requests while
 * one runs coalesce into a single pending refit, started when the active run ends.
 *
 * The marker runs/<name>/active.json is never deleted: it is claimed with If-None-Match (first
 * run) or If-Match (after an ended run), and released by rewriting it with `ended: true` under
 * If-Match, so a pending refit set between a read and a write cannot be lost (on real S3; see
 * docs/deploy.md for what the emulator does not enforce).
 */
import { randomUUID } from 'node:crypto';
import { ConfigError } from '../config.js';
import { ConflictError } from '../errors.js';
import type { Kernel } from '../kernel/types.js';
import { initialRunState, sendTasks } from './dispatch.js';
import { datasetConfig, planRun, PLANNER_WRITER } from './planner.js';
import { PreconditionFailedError } from './ports.js';
import { keys, validDatasetName } from './protocol.js';
import { jsonBody, readJson, readJsonIfExists, silentLog, type Manifest, type RoleContext, type RunState } from './run.js';

export interface ActiveRun {
  runId: string;
  /** When the run was claimed, i.e. when its planning started. */
  startedAt: string;
  /**
   * The request that claimed the dataset (requestRefit's `request`): a retry of that request after
   * its planner died finds its own claim and plans again, rather than coalescing into a run that
   * never came to exist.
   */
  request?: string;
  /** A refit was requested while this run was going. */
  pendingRefit: boolean;
  /** The run ended (done or failed); the dataset is free. */
  ended?: boolean;
}

/** A run with no state update for this long is taken as abandoned (a worker lost for good). */
export const ABANDON_AFTER_MS = 60 * 60 * 1000;

/**
 * A claim whose run has no state this long after it was made was never planned: its planner died
 * (no Lambda function runs longer than 15 minutes; the planner's limit is 5, infra/clusterwise.ts).
 * Any request may then take the dataset over, so a planner that died without a retry holds it 15
 * minutes, not an hour.
 */
export const PLANNING_TIMEOUT_MS = 15 * 60 * 1000;

/** The dataset of a data object key `datasets/<name>/data/…csv`, or undefined for other keys. */
export function datasetOfDataKey(key: string): string | undefined {
  const m = /^datasets\/([^/]+)\/data\/.+\.csv$/.exec(key);
  return m ? validDatasetName(m[1]) : undefined;
}

export type RefitOutcome = { started: string } | { coalesced: string };

/** Whether the marked run still holds the dataset; marks it failed when it was abandoned. */
async function stillActive(ctx: RoleContext, dataset: string, marker: ActiveRun, now: Date, abandonAfterMs: number): Promise<boolean> {
  if (marker.ended) return false;
  const stateKey = keys.state(dataset, marker.runId);
  const state = await readJsonIfExists<RunState>(ctx.store, stateKey);
  const lastSign = new Date(state?.value.updatedAt ?? marker.startedAt).getTime();
  if (state && state.value.status !== 'running') return false; // ended without releasing (a crash)
  if (!state && now.getTime() - lastSign >= Math.min(abandonAfterMs, PLANNING_TIMEOUT_MS)) {
    (ctx.log ?? silentLog).warn('a claim that was never planned taken over', { dataset, runId: marker.runId, claimedAt: marker.startedAt });
    return false;
  }
  if (now.getTime() - lastSign < abandonAfterMs) return true;
  if (state) {
    const failure = `abandoned: no progress since ${new Date(lastSign).toISOString()} (a task was lost; see the dead-letter queues)`;
    await ctx.store.put(stateKey, jsonBody({ ...state.value, status: 'failed', failure, updatedAt: now.toISOString() }), { ifMatch: state.etag });
  }
  (ctx.log ?? silentLog).warn('abandoned run replaced', { dataset, runId: marker.runId });
  return false;
}

/** Start a run of `dataset`, or mark a refit pending when one is active. */
export async function requestRefit(
  ctx: RoleContext,
  dataset: string,
  kernel: Kernel | Promise<Kernel>,
  overrides: Record<string, unknown> = {},
  options: {
    now?: Date;
    abandonAfterMs?: number;
    /**
     * Names the request, the same on each of its retries (a hash of the S3 event record, the SQS
     * message id, the Lambda request id): a retry resumes what a crashed attempt left. @default none
     */
    request?: string;
    /** A refit owed by this released run (RefitMessage.after): nothing to do once another run claimed the dataset. */
    after?: string;
  } = {},
): Promise<RefitOutcome> {
  const log = ctx.log ?? silentLog;
  if (!validDatasetName(dataset)) throw new ConfigError(`"${dataset}" is not a dataset name: 1 to 128 letters, digits, ".", "-", "_", and not "." or ".."`);
  const key = keys.activeRun(dataset);
  const now = options.now ?? new Date();
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await readJsonIfExists<ActiveRun>(ctx.store, key);
    try {
      // A retry of the request that made the claim: its run, if planned, serves it (even ended).
      const ours = current && options.request !== undefined && current.value.request === options.request;
      if (ours && (await resumePlanned(ctx, dataset, current.value.runId, now))) {
        log.info('retry found its run planned', { dataset, runId: current.value.runId });
        return { started: current.value.runId };
      }
      if (!ours && options.after !== undefined && current && current.value.runId !== options.after) {
        log.info('owed refit already served', { dataset, after: options.after, runId: current.value.runId });
        return { coalesced: current.value.runId };
      }
      // An earlier attempt of this request claimed the dataset and died before the run existed:
      // claim it again (below). Anyone else coalesces into a claim that may still be planning.
      if (!ours && current && (await stillActive(ctx, dataset, current.value, now, options.abandonAfterMs ?? ABANDON_AFTER_MS))) {
        if (!current.value.pendingRefit) await ctx.store.put(key, jsonBody({ ...current.value, pendingRefit: true }), { ifMatch: current.etag });
        log.info('refit coalesced', { dataset, runId: current.value.runId });
        return { coalesced: current.value.runId };
      }
      const runId = `${now.toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 6)}`;
      // Not pending even when requests coalesced into a claim taken over: planning lists the data after this claim.
      const marker: ActiveRun = { runId, startedAt: now.toISOString(), pendingRefit: false, ...(options.request ? { request: options.request } : {}) };
      const claimed = await ctx.store.put(key, jsonBody(marker), current ? { ifMatch: current.etag } : { ifNoneMatch: '*' });
      try {
        const config = await datasetConfig(ctx, dataset, overrides);
        await planRun(ctx, { dataset, config, runId, now }, kernel);
        return { started: runId };
      } catch (error) {
        // Planning failed (bad model.json, bad data): nothing runs, so free the dataset.
        await ctx.store.put(key, jsonBody({ ...marker, ended: true }), { ifMatch: claimed.etag }).catch(() => undefined);
        throw error;
      }
    } catch (error) {
      if (error instanceof PreconditionFailedError) continue; // the marker changed meanwhile: look again
      throw error;
    }
  }
  throw new ConflictError(`${dataset}: could not start or coalesce a refit (the active-run marker kept changing)`);
}

/**
 * A retry's view of the run its request claimed: false when it has no state (the planner died
 * before writing it). When the state is there but the run has not moved past its first round, the
 * first round's tasks are sent again, since the planner may have died between the state write and
 * sending them; a task sent twice writes the same sums (docs/deploy.md §9, Duplicates).
 */
async function resumePlanned(ctx: RoleContext, dataset: string, runId: string, now: Date): Promise<boolean> {
  const state = await readJsonIfExists<RunState>(ctx.store, keys.state(dataset, runId));
  if (!state) return false;
  if (state.value.status === 'running' && state.value.version === 0) {
    const manifest = (await readJson<Manifest>(ctx.store, keys.manifest(dataset, runId))).value;
    const first = initialRunState(manifest, state.value.posteriorKey, now, PLANNER_WRITER);
    if (first.state.round?.id === state.value.round?.id) await sendTasks(ctx.tasks, first.tasks);
  }
  return true;
}

/**
 * Called when a run ends (done or failed): frees the dataset. Returns true when a refit was
 * requested meanwhile, so the caller sends it. The released marker keeps `pendingRefit` until a
 * new run claims the dataset, so a caller that crashed before sending the refit sends it when it is
 * redelivered (a copy sent twice is dropped by its `after`).
 */
export async function releaseDataset(ctx: RoleContext, dataset: string, runId: string): Promise<boolean> {
  for (;;) {
    const current = await readJsonIfExists<ActiveRun>(ctx.store, keys.activeRun(dataset));
    if (!current || current.value.runId !== runId) return false;
    if (current.value.ended) return current.value.pendingRefit;
    try {
      await ctx.store.put(keys.activeRun(dataset), jsonBody({ ...current.value, ended: true }), { ifMatch: current.etag });
      return current.value.pendingRefit;
    } catch (error) {
      if (!(error instanceof PreconditionFailedError)) throw error;
    }
  }
}

/** Datasets that have a model.json (what a schedule with no explicit list refits). */
export async function configuredDatasets(ctx: RoleContext): Promise<string[]> {
  const objects = await ctx.store.list('datasets/');
  const names = objects.map((o) => /^datasets\/([^/]+)\/model\.json$/.exec(o.key)?.[1]).filter((d): d is string => d !== undefined);
  // A folder whose name is not a dataset name (a space, "..") is not refitted: said in the log, not retried.
  for (const bad of names.filter((d) => !validDatasetName(d))) (ctx.log ?? silentLog).error('not a dataset name; not refitted', { dataset: bad });
  return names.filter((d) => validDatasetName(d));
}
