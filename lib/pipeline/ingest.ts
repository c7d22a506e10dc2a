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
import type { Kernel } from '../kernel/types.js';
import { datasetConfig, planRun } from './planner.js';
import { PreconditionFailedError } from './ports.js';
import { keys, validDatasetName } from './protocol.js';
import { jsonBody, readJsonIfExists, silentLog, type RoleContext, type RunState } from './run.js';

export interface ActiveRun {
  runId: string;
  startedAt: string;
  /** A refit was requested while this run was going. */
  pendingRefit: boolean;
  /** The run ended (done or failed); the dataset is free. */
  ended?: boolean;
}

/** A run with no state update for this long is taken as abandoned (a worker lost for good). */
export const ABANDON_AFTER_MS = 60 * 60 * 1000;

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
  kernel: Kernel,
  overrides: Record<string, unknown> = {},
  options: { now?: Date; abandonAfterMs?: number } = {},
): Promise<RefitOutcome> {
  const log = ctx.log ?? silentLog;
  if (!validDatasetName(dataset)) throw new ConfigError(`"${dataset}" is not a dataset name: 1 to 128 letters, digits, ".", "-", "_", and not "." or ".."`);
  const key = keys.activeRun(dataset);
  const now = options.now ?? new Date();
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await readJsonIfExists<ActiveRun>(ctx.store, key);
    try {
      if (current && (await stillActive(ctx, dataset, current.value, now, options.abandonAfterMs ?? ABANDON_AFTER_MS))) {
        if (!current.value.pendingRefit) await ctx.store.put(key, jsonBody({ ...current.value, pendingRefit: true }), { ifMatch: current.etag });
        log.info('refit coalesced', { dataset, runId: current.value.runId });
        return { coalesced: current.value.runId };
      }
      const runId = `${now.toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 6)}`;
      const marker: ActiveRun = { runId, startedAt: now.toISOString(), pendingRefit: false };
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
  throw new Error(`${dataset}: could not start or coalesce a refit (the active-run marker kept changing)`);
}

/**
 * Called when a run ends (done or failed): frees the dataset. Returns true when a refit was
 * requested meanwhile, so the caller starts it.
 */
export async function releaseDataset(ctx: RoleContext, dataset: string, runId: string): Promise<boolean> {
  for (;;) {
    const current = await readJsonIfExists<ActiveRun>(ctx.store, keys.activeRun(dataset));
    if (!current || current.value.runId !== runId || current.value.ended) return false;
    try {
      await ctx.store.put(keys.activeRun(dataset), jsonBody({ ...current.value, pendingRefit: false, ended: true }), { ifMatch: current.etag });
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
