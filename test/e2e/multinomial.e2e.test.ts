/**
 * End-to-end: a multinomial model (lib/model/families/multinomial.ts) through the serverless
 * pipeline on the emulator: the real handlers, an upload in three parts, four worker pollers and an
 * aggregator (test/e2e/stack.ts), against the local fit of the same files. The class labels travel
 * from the planner's sample in the manifest's plan; the workers and the aggregator move only S.
 */
import { describe, expect, it } from 'vitest';
import { CLASSES, multinomialCsv, multinomialCwm } from '../support/multinomial-data.js';
import { expectAgreesWithLocal, fitPartsLocally, runCleanly, splitCsv, useEmulatedStack } from './stack.js';

const DATASET = 'fruit';
const MODEL = {
  target: 'y',
  family: 'multinomial',
  columns: ['x1', 'x2'],
  components: 6,
  seed: 5,
  schedule: { shardRows: 400, tolerance: 1e-7, maxSweeps: 50 },
};

/** The emulated stack, started before this file's tests and stopped after (stack.ts). */
const env = useEmulatedStack();

describe('a multinomial model on the emulated stack', () => {
  it('counts every row once, carries the class labels in the manifest, and agrees with the local fit', { timeout: 180_000 }, async () => {
    const [header, ...lines] = multinomialCsv(multinomialCwm(3200, 9).rows).toString().trim().split('\n');
    const parts = splitCsv(header, lines, 3);
    const { manifest, remote } = await runCleanly(env, DATASET, MODEL, parts, 3200);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(6);
    expect(manifest.plan.select[manifest.plan.ySlot].levels).toEqual([...CLASSES]);
    expect(remote.state.config.family).toBe('multinomial');
    // The four clusters of the data, and nothing else of weight.
    expect(remote.components.filter((c) => c.weight > 0.05)).toHaveLength(4);

    // The same files and settings on this machine: the two differ only in the order sums are added.
    const local = await fitPartsLocally(parts, MODEL, 'clusterwise-e2e-multinomial-');
    expectAgreesWithLocal(remote, local);
    remote.components.forEach((c, k) => {
      c.classes!.forEach((head, j) => {
        const other = local.components[k].classes![j];
        expect(head.class).toBe(other.class);
        head.coefficients.forEach((v, i) => expect(v).toBeCloseTo(other.coefficients[i], 4));
        expect(head.intercept).toBeCloseTo(other.intercept, 4);
      });
    });
  });
});
