/**
 * End-to-end: a CWM whose covariates have 10% of their cells blanked (docs/model.md §18) through
 * the serverless pipeline on the emulator: the real handlers, an upload in three parts, worker
 * pollers and an aggregator (test/e2e/stack.ts), the missing cells carried as NaN in the shards'
 * binary copies, counted per column, and the result against the local fit of the same files.
 */
import { describe, expect, it } from 'vitest';
import { missingCwm, SEPARATED_MEANS } from '../support/missing-data.js';
import { expectAgreesWithLocal, fitPartsLocally, runCleanly, splitCsv, useEmulatedStack } from './stack.js';

const DATASET = 'holes';
const MODEL = { target: 'y', components: 6, seed: 3, schedule: { shardRows: 300, tolerance: 1e-7, maxSweeps: 50 } };

/** The emulated stack, started before this file's tests and stopped after (stack.ts). */
const env = useEmulatedStack();

describe('a CWM with missing covariate values on the emulated stack', () => {
  it('uses every row, counts the missing cells per column, and agrees with the local fit', { timeout: 180_000 }, async () => {
    const data = missingCwm(2400, 23, SEPARATED_MEANS);
    const [header, ...lines] = data.holes.trim().split('\n');
    const parts = splitCsv(header, lines, 3);
    const { manifest, remote } = await runCleanly(env, DATASET, MODEL, parts, 2400);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(6);
    expect(manifest.plan.select.filter((s) => s.marginal).map((s) => s.column)).toEqual(['x1', 'x2', 'x3']);
    expect(remote.rows).toBe(2400);
    expect(remote.skippedRows).toBe(0);
    expect(remote.missingValues).toEqual({ x1: data.blanked[0], x2: data.blanked[1], x3: data.blanked[2] });
    expect(remote.components.filter((c) => c.weight > 0.05)).toHaveLength(4);

    // The same files and settings on this machine: the same sums, added in another order.
    const local = await fitPartsLocally(parts, MODEL, 'clusterwise-e2e-missing-');
    expect(local.missingValues).toEqual(remote.missingValues);
    expectAgreesWithLocal(remote, local);
  });
});
