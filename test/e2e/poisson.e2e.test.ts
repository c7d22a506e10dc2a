/**
 * End-to-end: a Poisson model with an exposure (lib/model/families/poisson.ts) through the
 * serverless pipeline on the emulator: the real handlers, an upload in three parts, four worker
 * pollers and an aggregator (test/e2e/stack.ts), against the local fit of the same files.
 */
import { describe, expect, it } from 'vitest';
import { poissonCsv, poissonCwm } from '../support/poisson-data.js';
import { expectAgreesWithLocal, fitPartsLocally, runCleanly, splitCsv, useEmulatedStack } from './stack.js';

const DATASET = 'counts';
const MODEL = {
  target: 'y',
  family: 'poisson',
  columns: ['x1', 'x2'],
  exposure: 't',
  components: 6,
  seed: 5,
  schedule: { shardRows: 300, tolerance: 1e-7, maxSweeps: 50 },
};

/** The emulated stack, started before this file's tests and stopped after (stack.ts). */
const env = useEmulatedStack();

describe('a poisson model on the emulated stack', () => {
  it('counts every row once, keeps the exposure as the offset, and agrees with the local fit', { timeout: 180_000 }, async () => {
    const [header, ...lines] = poissonCsv(poissonCwm(2400, 9, true).rows).toString().trim().split('\n');
    const parts = splitCsv(header, lines, 3);
    const { manifest, remote } = await runCleanly(env, DATASET, MODEL, parts, 2400);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(6);
    expect(remote.state.config.family).toBe('poisson');
    expect(remote.state.plan.offset).toMatchObject({ column: 't', log: true });
    // The three clusters of the data, and nothing else of weight.
    expect(remote.components.filter((c) => c.weight > 0.05)).toHaveLength(3);

    // The same files and settings on this machine: batch sweeps from the same initialization, so
    // the two differ only in the order sums are added.
    const local = await fitPartsLocally(parts, MODEL, 'clusterwise-e2e-poisson-');
    expectAgreesWithLocal(remote, local);
  });
});
