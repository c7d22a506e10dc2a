/**
 * End-to-end: a CWM whose covariates have 10% of their cells blanked (docs/model.md §17) through
 * the serverless pipeline on the emulator: the real handlers, an upload in three parts, worker
 * pollers and an aggregator (test/e2e/stack.ts), the missing cells carried as NaN in the shards'
 * binary copies, counted per column, and the result against the local fit of the same files.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../lib/config.js';
import { fitLocal } from '../../lib/local/runner.js';
import type { PosteriorDocument } from '../../lib/model/summary.js';
import { keys } from '../../lib/pipeline/protocol.js';
import type { Manifest, RunState } from '../../lib/pipeline/run.js';
import { tempDir } from '../support/cli.js';
import { pollUntil } from '../support/lambda-poller.js';
import { missingCwm, SEPARATED_MEANS } from '../support/missing-data.js';
import { eventSources, readObject, runEnded, splitCsv, startRun, useEmulatedStack } from './stack.js';

const DATASET = 'holes';
const MODEL = { target: 'y', components: 6, seed: 3, schedule: { shardRows: 300, tolerance: 1e-7, maxSweeps: 50 } };

/** The emulated stack, started before this file's tests and stopped after (stack.ts). */
const env = useEmulatedStack();

describe('a CWM with missing covariate values on the emulated stack', () => {
  it('uses every row, counts the missing cells per column, and agrees with the local fit', { timeout: 180_000 }, async () => {
    const data = missingCwm(2400, 23, SEPARATED_MEANS);
    const [header, ...lines] = data.holes.trim().split('\n');
    const parts = splitCsv(header, lines, 3);
    const runId = await startRun(env.stack, env.handlers, DATASET, MODEL, parts);
    const manifest = await readObject<Manifest>(env.stack, keys.manifest(DATASET, runId));
    expect(manifest.shards.length).toBeGreaterThanOrEqual(6);
    expect(manifest.plan.select.filter((s) => s.marginal).map((s) => s.column)).toEqual(['x1', 'x2', 'x3']);
    const { workers, aggregator } = eventSources(env.stack, env.handlers);
    await pollUntil([workers, aggregator], runEnded(env.stack, DATASET, runId), { timeoutMs: 150_000, description: `run ${runId} ended` });
    const state = await readObject<RunState>(env.stack, keys.state(DATASET, runId));
    expect(state.failure).toBeUndefined();
    expect(state.status).toBe('done');
    expect(state.totalRows).toBe(2400);
    expect(state.seen.skipped).toBe(0);
    expect(workers.handlerErrors).toEqual([]);
    expect(aggregator.handlerErrors).toEqual([]);
    const remote = await readObject<PosteriorDocument>(env.stack, keys.result(DATASET, runId, 'posterior.json'));
    expect(remote.rows).toBe(2400);
    expect(remote.skippedRows).toBe(0);
    expect(remote.missingValues).toEqual({ x1: data.blanked[0], x2: data.blanked[1], x3: data.blanked[2] });
    expect(remote.components.filter((c) => c.weight > 0.05)).toHaveLength(4);

    // The same files and settings on this machine: the same sums, added in another order.
    const dir = tempDir('clusterwise-e2e-missing-');
    const files = parts.map((body, i) => {
      const file = path.join(dir, 'data', `part-${String(i).padStart(2, '0')}.csv`);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, body);
      return file;
    });
    const local = (await fitLocal({ files, config: parseConfig(MODEL), outDir: path.join(dir, 'out'), workers: 0 })).posterior;
    expect(local.missingValues).toEqual(remote.missingValues);
    expect(Math.abs(remote.elbo - local.elbo)).toBeLessThanOrEqual(1e-6 * Math.abs(local.elbo));
    expect(remote.components.length).toBe(local.components.length);
    remote.components.forEach((c, k) => {
      expect(c.weight).toBeCloseTo(local.components[k].weight, 5);
      c.coefficients.forEach((v, j) => expect(v).toBeCloseTo(local.components[k].coefficients[j], 4));
      c.mean!.forEach((v, j) => expect(v).toBeCloseTo(local.components[k].mean![j], 4));
    });
  });
});
