/** The pipeline roles wired in one thread over in-memory ports: the local runner's loop without threads. */
import { expect } from 'vitest';
import { referenceKernel } from '../../lib/kernel/reference.js';
import type { Kernel } from '../../lib/kernel/types.js';
import { handleUpdates } from '../../lib/pipeline/aggregator.js';
import { MemoryObjectStore } from '../../lib/pipeline/memory-store.js';
import { MemoryQueue } from '../../lib/pipeline/memory-queue.js';
import { parseMessage, UpdateMessage } from '../../lib/pipeline/protocol.js';
import { readJson, type Progress, type RunState, type WorkerContext } from '../../lib/pipeline/run.js';
import { handleTaskDelivery, WorkerCache } from '../../lib/pipeline/worker.js';

export function inlinePorts(kernel: Kernel = referenceKernel) {
  const store = new MemoryObjectStore();
  const tasks = new MemoryQueue({ name: 'tasks' });
  const updates = new MemoryQueue({ name: 'updates.fifo', fifo: true });
  const ctx: WorkerContext & { progress?: Progress } = { store, tasks, updates, kernel };
  ctx.onProgress = (p) => (ctx.progress = p);
  return ctx;
}

/** Deliver tasks and updates until the run ends; returns the last progress. */
export async function drive(ctx: ReturnType<typeof inlinePorts>, maxSteps = 100_000): Promise<Progress> {
  const cache = new WorkerCache();
  Object.assign(ctx, { progress: undefined }); // forget a previous run's
  for (let step = 0; step < maxSteps; step++) {
    const [task] = await ctx.tasks.receive(1, 0);
    if (task) {
      await handleTaskDelivery(ctx, task, 3, cache);
      await ctx.tasks.delete(task);
    }
    const delivered = await ctx.updates.receive(10, 0);
    if (delivered.length) {
      await handleUpdates(ctx, delivered.map((m) => parseMessage(UpdateMessage, m.body, 'updates')));
      for (const m of delivered) await ctx.updates.delete(m);
    }
    if (ctx.progress && ctx.progress.status !== 'running') return ctx.progress;
    if (!task && !delivered.length) throw new Error('the run stalled');
  }
  throw new Error('the run did not end');
}

/**
 * Runs the run round by round: every task delivered, then the round's completions applied, and
 * then applied again (a redelivery, a second worker's message), checking that the second time
 * changes nothing. `onRound` sees the state after each round and how many completions it had.
 * Returns the final state.
 */
export async function driveRedelivering(
  ctx: ReturnType<typeof inlinePorts>,
  stateKey: string,
  onRound: (after: RunState, completions: number) => void = () => {},
  maxRounds = 10_000,
): Promise<RunState> {
  const cache = new WorkerCache();
  for (let round = 0; round < maxRounds; round++) {
    for (let batch = await ctx.tasks.receive(10, 0); batch.length; batch = await ctx.tasks.receive(10, 0))
      for (const task of batch) {
        await handleTaskDelivery(ctx, task, 3, cache);
        await ctx.tasks.delete(task);
      }
    const delivered = await ctx.updates.receive(10, 0);
    const messages = delivered.map((m) => parseMessage(UpdateMessage, m.body, 'updates'));
    await handleUpdates(ctx, messages);
    for (const m of delivered) await ctx.updates.delete(m);
    const after = (await readJson<RunState>(ctx.store, stateKey)).value;
    onRound(after, delivered.length);
    await handleUpdates(ctx, messages);
    expect((await readJson<RunState>(ctx.store, stateKey)).value).toEqual(after);
    if (after.status !== 'running') return after;
  }
  throw new Error('the run did not end');
}
