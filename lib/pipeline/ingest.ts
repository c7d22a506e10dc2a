/**
 * Starting runs on AWS (and from `clusterwise submit`): an upload, the schedule or a direct
 * request asks for a refit of a dataset. At most one run per dataset is active; requests while
 * one runs coalesce into a single pending refit, started when the active run ends.
 *
 * The marker runs/<name>/active.json is created with If-None-Match and updated with If-Match, so
 * two concurrent requests cannot both start a run (on real S3; see docs/deploy.md).
 */
import { randomUUID } from 'node:crypto';
import type { Kernel } from '../kernel/types.js';
import { datasetConfig, planRun } from './planner.js';
import { PreconditionFailedError } from './ports.js';
import { keys } from './protocol.js';
import { jsonBody, readJsonIfExists, silentLog, type RoleContext } from './run.js';

export interface ActiveRun {
  runId: string;
  startedAt: string;
  /** A refit was requested while this run was going. */
  pendingRefit: boolean;
}

/** The dataset of a data object key `datasets/<name>/data/…csv`, or undefined for other keys. */
export function datasetOfDataKey(key: string): string | undefined {
  const m = /^datasets\/([A-Za-z0-9._-]{1,128})\/data\/.+\.csv$/.exec(key);
  return m?.[1];
}

export type RefitOutcome = { started: string } | { coalesced: string };

/** Start a run of `dataset`, or mark a refit pending when one is active. */
export async function requestRefit(ctx: RoleContext, dataset: string, kernel: Kernel, overrides: Record<string, unknown> = {}): Promise<RefitOutcome> {
  const log = ctx.log ?? silentLog;
  const key = keys.activeRun(dataset);
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await readJsonIfExists<ActiveRun>(ctx.store, key);
    if (current) {
      if (current.value.pendingRefit) return { coalesced: current.value.runId };
      try {
        await ctx.store.put(key, jsonBody({ ...current.value, pendingRefit: true }), { ifMatch: current.etag });
        log.info('refit coalesced', { dataset, runId: current.value.runId });
        return { coalesced: current.value.runId };
      } catch (error) {
        if (error instanceof PreconditionFailedError) continue;
        throw error;
      }
    }
    const now = new Date();
    const runId = `${now.toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 6)}`;
    const marker: ActiveRun = { runId, startedAt: now.toISOString(), pendingRefit: false };
    try {
      await ctx.store.put(key, jsonBody(marker), { ifNoneMatch: '*' });
    } catch (error) {
      if (error instanceof PreconditionFailedError) continue;
      throw error;
    }
    try {
      const config = await datasetConfig(ctx, dataset, overrides);
      await planRun(ctx, { dataset, config, runId, now }, kernel);
      return { started: runId };
    } catch (error) {
      // Planning failed (bad model.json, bad data): nothing runs, so release the dataset.
      await ctx.store.delete(key);
      throw error;
    }
  }
  throw new Error(`${dataset}: could not start or coalesce a refit (the active-run marker kept changing)`);
}

/**
 * Called when a run ends (done or failed): clears the marker. Returns true when a refit was
 * requested meanwhile, so the caller starts it.
 */
export async function releaseDataset(ctx: RoleContext, dataset: string, runId: string): Promise<boolean> {
  const current = await readJsonIfExists<ActiveRun>(ctx.store, keys.activeRun(dataset));
  if (!current || current.value.runId !== runId) return false;
  await ctx.store.delete(keys.activeRun(dataset));
  return current.value.pendingRefit;
}

/** Datasets that have a model.json (what a schedule with no explicit list refits). */
export async function configuredDatasets(ctx: RoleContext): Promise<string[]> {
  const objects = await ctx.store.list('datasets/');
  return objects.map((o) => /^datasets\/([^/]+)\/model\.json$/.exec(o.key)?.[1]).filter((d): d is string => d !== undefined);
}
