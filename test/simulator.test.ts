/**
 * The simulator's model of CPU on a Lambda function's vCPUs (bench/sim/run.ts#lambdaSeconds):
 * docs/deploy.md §6 reports its predictions, so its arithmetic is checked here.
 */
import { describe, expect, it } from 'vitest';
import { lambdaSeconds } from '../bench/sim/run.js';
import { FULL_VCPU_MIB } from '../infra/memory.js';

describe('lambdaSeconds', () => {
  const speed = 0.8;
  const work = { thread: 1.4, process: 2.1 }; // a cold planner's initialization, roughly

  it('on one vCPU charges the whole process, background threads taking turns with the caller', () => {
    expect(lambdaSeconds(work, FULL_VCPU_MIB, speed)).toBeCloseTo(2.1 / speed, 12);
  });

  it('with a second vCPU charges only the calling thread when the rest fits beside it', () => {
    expect(lambdaSeconds(work, 2 * FULL_VCPU_MIB, speed)).toBeCloseTo(1.4 / speed, 12);
    // More vCPUs do not make one thread faster.
    expect(lambdaSeconds(work, 5 * FULL_VCPU_MIB, speed)).toBeCloseTo(1.4 / speed, 12);
  });

  it('below one vCPU slows every thread in proportion to the memory', () => {
    expect(lambdaSeconds(work, FULL_VCPU_MIB / 2, speed)).toBeCloseTo((2 * 2.1) / speed, 12);
  });

  it('never charges less than the single-threaded work nor more than the process on one vCPU', () => {
    for (const memory of [1024, 1769, 2048, 3008, 3538, 10240]) {
      const seconds = lambdaSeconds(work, memory, speed);
      expect(seconds).toBeGreaterThanOrEqual(work.thread / speed / Math.min(1, memory / FULL_VCPU_MIB) - 1e-12);
      if (memory >= FULL_VCPU_MIB) expect(seconds).toBeLessThanOrEqual(work.process / speed + 1e-12);
    }
  });
});
