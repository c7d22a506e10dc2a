/**
 * The ports under the virtual clock: every request first sleeps the caller's CPU debt, then its
 * modelled time (latency + bytes / bandwidth), then happens in memory. The roles above them are
 * the real planner, worker and aggregator.
 */
import { createRandom, shuffled } from '../../lib/math/random.js';
import { MemoryQueue } from '../../lib/pipeline/memory-queue.js';
import { NotFoundError, PreconditionFailedError, type ObjectStore, type Queue, type QueueMessage, type SendOptions } from '../../lib/pipeline/ports.js';
import { payCpu, type VirtualClock } from './clock.js';
import type { GeneratedCsv } from './data.js';
import type { SimParams } from './params.js';

const size = (body: Uint8Array | string) => (typeof body === 'string' ? Buffer.byteLength(body) : body.length);

/**
 * S3 as modelled: `chargedBytes` may say that an object stands for more bytes than it holds (a
 * shard's binary copy past `data.realRows` holds a sample of its rows but is charged as all).
 */
export function timedStore(inner: ObjectStore, clock: VirtualClock, p: SimParams, chargedBytes = (_key: string, body: Uint8Array | string) => size(body)): ObjectStore {
  const wait = async (latency: number, seconds = 0) => {
    await payCpu(clock);
    await clock.sleep(latency + seconds);
  };
  return {
    async get(key) {
      const out = await inner.get(key);
      await wait(p.s3.getLatency, chargedBytes(key, out.body) / p.s3.getBandwidth);
      return out;
    },
    async getRange(key, start, end, options) {
      const out = await inner.getRange(key, start, end, options);
      await wait(p.s3.getLatency, chargedBytes(key, out) / p.s3.getBandwidth);
      return out;
    },
    async head(key) {
      await wait(p.s3.getLatency);
      return inner.head(key);
    },
    async put(key, body, options) {
      await wait(p.s3.putLatency, chargedBytes(key, body) / p.s3.putBandwidth);
      return inner.put(key, body, options);
    },
    async list(prefix) {
      await wait(p.s3.listLatency);
      return inner.list(prefix);
    },
    delete: (key) => inner.delete(key),
  };
}

/** `n` line breaks: views of one shared buffer (a thousand workers reading 60 MB shards at once must not hold 60 GB). */
let breaks = new Uint8Array(0);
function lineBreaks(n: number): Uint8Array {
  if (breaks.length < n) breaks = new Uint8Array(Math.max(n, 2 * breaks.length)).fill(10);
  return breaks.subarray(0, n);
}

/**
 * The data set as read-only CSV objects generated on demand. With `filler`, ranges longer than
 * 1 MiB are served as line breaks of the same length: the worker reads (and is charged for) the
 * bytes of a shard, while its rows come from the sample codec (data.ts).
 */
export function generatedStore(files: Map<string, GeneratedCsv>, filler: boolean): ObjectStore {
  const etag = (data: GeneratedCsv) => `"generated-${data.seed}-${data.rows}"`;
  const file = (key: string) => {
    const data = files.get(key);
    if (!data) throw new NotFoundError(key);
    return data;
  };
  const readOnly = async (): Promise<never> => {
    throw new Error('the generated data set is read-only');
  };
  return {
    async get(key) {
      const data = file(key);
      return { body: data.range(0, data.size), etag: etag(data) };
    },
    async getRange(key, start, end, options) {
      const data = file(key);
      if (options?.ifMatch && options.ifMatch !== etag(data)) throw new PreconditionFailedError(key);
      end = Math.min(end, data.size);
      if (filler && end - start > 1 << 20) return lineBreaks(end - start);
      return data.range(start, end);
    },
    async head(key) {
      const data = files.get(key);
      return data && { key, size: data.size, etag: etag(data) };
    },
    put: readOnly,
    list: async (prefix) => [...files].filter(([k]) => k.startsWith(prefix)).map(([key, data]) => ({ key, size: data.size, etag: etag(data) })),
    delete: readOnly,
  };
}

/**
 * An SQS queue as modelled: sends take a request's latency (a batch of many entries goes out in
 * SendMessageBatch requests of 10, `sendConcurrency` at a time on a standard queue, one after
 * another on FIFO). Receiving and deleting are the event source mapping's, not a function's, so
 * they take no function time; `whenNonEmpty` is how the simulated pollers wait. The idle
 * containers waiting on the queue are woken in a random (seeded) order: Lambda's pollers hand a
 * batch to any free container, so nothing ties a shard's next task to the container that read it
 * before. (Woken in one fixed order, equal tasks would meet the same containers pass after pass,
 * and every pass after the first would find its shard in the container's cache, which AWS does not do.)
 */
export class SimQueue implements Queue {
  readonly inner: MemoryQueue;
  private waiters: (() => void)[] = [];
  private readonly wakeOrder = createRandom(17, 0);

  constructor(
    readonly name: string,
    private readonly clock: VirtualClock,
    private readonly p: SimParams,
  ) {
    this.inner = new MemoryQueue({ name, fifo: name.endsWith('.fifo'), visibilityTimeoutSeconds: 900, now: () => clock.now * 1000 });
  }

  async send(body: string, options?: SendOptions): Promise<void> {
    await this.sendBatch([{ body, options }]);
  }

  async sendBatch(entries: { body: string; options?: SendOptions }[]): Promise<void> {
    await payCpu(this.clock);
    const requests = Math.ceil(entries.length / 10);
    const waves = this.name.endsWith('.fifo') ? requests : Math.ceil(requests / this.p.sqs.sendConcurrency);
    await this.clock.sleep(waves * this.p.sqs.requestLatency);
    await this.inner.sendBatch(entries);
    this.wakeAll();
  }

  receive(max: number): Promise<QueueMessage[]> {
    return this.inner.receive(max, 0);
  }

  delete(message: QueueMessage): Promise<void> {
    return this.inner.delete(message);
  }

  release(message: QueueMessage, seconds?: number): Promise<void> {
    return this.inner.release(message, seconds);
  }

  depth(): Promise<number> {
    return this.inner.depth();
  }

  /** Resolves at the next send (or at `wakeAll`). */
  whenNonEmpty(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  wakeAll(): void {
    for (const wake of shuffled(this.waiters.splice(0), this.wakeOrder)) wake();
  }
}
