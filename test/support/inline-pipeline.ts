/** The pipeline roles wired in one thread over in-memory ports: the local runner's loop without threads. */
import { referenceKernel } from '../../lib/kernel/reference.js';
import type { Kernel } from '../../lib/kernel/types.js';
import { handleUpdates } from '../../lib/pipeline/aggregator.js';
import { MemoryObjectStore } from '../../lib/pipeline/memory-store.js';
import { MemoryQueue } from '../../lib/pipeline/memory-queue.js';
import { parseMessage, UpdateMessage } from '../../lib/pipeline/protocol.js';
import type { Progress, WorkerContext } from '../../lib/pipeline/run.js';
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
