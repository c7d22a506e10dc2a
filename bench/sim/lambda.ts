/**
 * Lambda functions behind SQS event source mappings, as modelled: a function is a set of
 * containers (slots), each taking one batch at a time; a message goes to a warm idle container
 * when there is one (which one is random, SimQueue), else starts a new one, whose first invocation pays the
 * cold start; its duration (cold start included, as Lambda bills the init phase) is its time from
 * start to end, CPU debt included. The worker mapping's concurrency follows `lambda.scaling`.
 */
import { createRandom } from '../../lib/math/random.js';
import { invocation, payCpu, type VirtualClock } from './clock.js';
import type { SimParams } from './params.js';
import type { SimQueue } from './ports.js';
import type { RequestCounts } from '../../lib/pipeline/counting.js';
import type { QueueMessage } from '../../lib/pipeline/ports.js';

export interface FunctionStats {
  invocations: number;
  coldStarts: number;
  /** Σ invocation durations (s). */
  busySeconds: number;
  memoryMb: number;
}

/** One invocation, as the timeline sees it (s on the virtual clock). */
export interface InvocationRecord {
  /** When it took its batch; `ready`: when its cold start, if it had one, ended. */
  start: number;
  ready: number;
  end: number;
  messages: QueueMessage[];
  /** Its modelled CPU seconds by kind. */
  cpu: Record<string, number>;
}

export interface Mapping {
  stats: FunctionStats;
  stop(): void;
}

export interface MappingOptions<Container> {
  fn: string;
  clock: VirtualClock;
  queue: SimQueue;
  params: SimParams;
  memoryMb: number;
  /** Containers (maximum concurrency). */
  concurrency: number;
  batchSize: number;
  /** When container i may start polling, given the time the first message arrived. */
  enabledAt?: (container: number, firstMessageAt: number) => number;
  /** A container's own state (caches), made at its cold start. */
  container: () => Container;
  /** The handler; a message it throws on is released for redelivery, the others deleted. */
  handle: (messages: QueueMessage[], container: Container) => Promise<void>;
  /** Extra modelled CPU per invocation (s). */
  cpuPerInvocation?: number;
  /** Where the mapping's own SQS requests (receives that returned messages, deletes) are counted. */
  counts: RequestCounts;
  /** Told of each invocation when it ends. */
  onInvocation?: (record: InvocationRecord) => void;
}

/** How much later than the warm containers a container not yet started takes a message (s): just after the last. */
const COLD_AFTER_WARM = 1e-6;

export function eventSourceMapping<Container>(o: MappingOptions<Container>): Mapping {
  const stats: FunctionStats = { invocations: 0, coldStarts: 0, busySeconds: 0, memoryMb: o.memoryMb };
  const polls = createRandom(31, o.fn.length);
  // The poll delay at quantile u of its range, ± half the mean (params.ts sqs.pollDelay).
  const pollDelay = (u: number) => o.params.sqs.pollDelay * (0.5 + u);
  let stopped = false;
  let firstMessageAt: number | undefined;
  const poll = async (slot: number) => {
    let warm = false;
    let state!: Container;
    while (!stopped) {
      if (firstMessageAt !== undefined && o.enabledAt) {
        const at = o.enabledAt(slot, firstMessageAt);
        if (at > o.clock.now) await o.clock.sleep(at - o.clock.now);
      }
      const messages = await o.queue.receive(o.batchSize);
      if (messages.length) o.counts.sqs += 1;
      if (!messages.length) {
        await o.queue.whenNonEmpty();
        if (stopped) return;
        firstMessageAt ??= o.clock.now;
        if (o.enabledAt && o.enabledAt(slot, firstMessageAt) > o.clock.now) continue;
        // Lambda hands a batch to a warm, idle execution environment when there is one, and starts a
        // new one only when there is not: a container not yet started polls a moment after the warm ones.
        await o.clock.sleep(warm ? pollDelay(polls.uniform()) : pollDelay(1) + COLD_AFTER_WARM);
        continue;
      }
      const start = o.clock.now;
      if (!warm) {
        warm = true;
        stats.coldStarts += 1;
        await o.clock.sleep(o.params.lambda.coldStart);
        state = o.container();
      }
      const ready = o.clock.now;
      const charged: Record<string, number> = {};
      let failed = false;
      await invocation.run({ fn: o.fn, cpu: o.cpuPerInvocation ?? 0, charged }, async () => {
        try {
          await o.handle(messages, state);
        } catch {
          failed = true;
        }
        await payCpu(o.clock);
      });
      stats.invocations += 1;
      stats.busySeconds += o.clock.now - start;
      o.onInvocation?.({ start, ready, end: o.clock.now, messages, cpu: charged });
      for (const m of messages) await (failed ? o.queue.release(m, 0) : o.queue.delete(m));
      o.counts.sqs += Math.ceil(messages.length / 10); // DeleteMessageBatch (or ChangeMessageVisibilityBatch)
    }
  };
  for (let slot = 0; slot < o.concurrency; slot++) void poll(slot);
  return {
    stats,
    stop() {
      stopped = true;
      o.queue.wakeAll();
    },
  };
}

/** The worker mapping's ramp: all at once (provisioned mode), or 5 then +300 a minute (standard). */
export function workerRamp(p: SimParams): MappingOptions<unknown>['enabledAt'] {
  if (p.lambda.scaling === 'provisioned') return undefined;
  const { standardStart, standardPerMinute } = p.lambda;
  return (slot, first) => (slot < standardStart ? first : first + ((slot - standardStart + 1) * 60) / standardPerMinute);
}
