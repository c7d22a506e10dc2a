/**
 * Request counting around the ports, as S3 and SQS bill them: one definition shared by the
 * simulator (bench/sim) and the measured multi-process run (test/e2e/multiprocess), so their
 * counts compare like for like.
 *
 * - s3Get: GET, ranged GET and HEAD (billed as GET-class); s3Put: PUT; s3List: LIST pages of up
 *   to 1000 keys (billed as PUT-class); deletes are free and not counted.
 * - sqs: SendMessage, SendMessageBatch (one per 10 entries), DeleteMessage, ChangeMessageVisibility,
 *   and ReceiveMessage calls that returned messages (empty long polls are left out: their number
 *   depends on how long pollers idle, not on the run).
 */
import type { ObjectStore, Queue } from './ports.js';

export interface RequestCounts {
  s3Get: number;
  s3Put: number;
  s3List: number;
  sqs: number;
  /** Bytes read from and written to the object store. */
  bytesRead: number;
  bytesWritten: number;
}

export function emptyCounts(): RequestCounts {
  return { s3Get: 0, s3Put: 0, s3List: 0, sqs: 0, bytesRead: 0, bytesWritten: 0 };
}

export function addCounts(into: RequestCounts, more: RequestCounts): RequestCounts {
  for (const key of Object.keys(into) as (keyof RequestCounts)[]) into[key] += more[key];
  return into;
}

const byteLength = (body: Uint8Array | string) => (typeof body === 'string' ? Buffer.byteLength(body) : body.length);

/** `size` may say an object stands for more bytes than it holds (the simulator's sampled shards). */
export function countingStore(inner: ObjectStore, counts: RequestCounts, size = (_key: string, body: Uint8Array | string) => byteLength(body)): ObjectStore {
  return {
    async get(key) {
      counts.s3Get += 1;
      const out = await inner.get(key);
      counts.bytesRead += size(key, out.body);
      return out;
    },
    async getRange(key, start, end, options) {
      counts.s3Get += 1;
      const out = await inner.getRange(key, start, end, options);
      counts.bytesRead += out.length;
      return out;
    },
    async head(key) {
      counts.s3Get += 1;
      return inner.head(key);
    },
    async put(key, body, options) {
      counts.s3Put += 1;
      counts.bytesWritten += size(key, body);
      return inner.put(key, body, options);
    },
    async list(prefix) {
      const out = await inner.list(prefix);
      counts.s3List += Math.max(1, Math.ceil(out.length / 1000));
      return out;
    },
    delete: (key) => inner.delete(key),
  };
}

export function countingQueue(inner: Queue, counts: RequestCounts): Queue {
  return {
    get name() {
      return inner.name;
    },
    async send(body, options) {
      counts.sqs += 1;
      return inner.send(body, options);
    },
    async sendBatch(entries) {
      counts.sqs += Math.ceil(entries.length / 10);
      return inner.sendBatch(entries);
    },
    async receive(max, waitSeconds) {
      const out = await inner.receive(max, waitSeconds);
      if (out.length) counts.sqs += 1;
      return out;
    },
    async delete(message) {
      counts.sqs += 1;
      return inner.delete(message);
    },
    async release(message, seconds) {
      counts.sqs += 1;
      return inner.release(message, seconds);
    },
    depth: () => inner.depth(),
  };
}
