/**
 * Large message bodies travel through the object store (the "claim check" pattern), for any Queue.
 *
 * A body longer than maxInlineBytes (UTF-8) is written to `${prefix}/${sha256(body)}.json` and the
 * queue carries the pointer `{"$pointer":"<key>"}` instead; receiving resolves the pointer, so
 * callers see the original body. Keys are content-addressed: resending the same body (a retry)
 * rewrites the same object, and no object is deleted when its message is, because another
 * in-flight message may point to it. Expire the prefix with a lifecycle rule (S3) or clean it up
 * with the run.
 *
 * A small body that happens to look like a pointer is offloaded too, so a received pointer is
 * never ambiguous.
 *
 * Lambda handlers receive SQS records rather than calling `receive`: they should call
 * `resolvePayload(record.body, store)` per record, so that one lost payload fails only its record.
 */
import { createHash } from 'node:crypto';
import { NotFoundError, PortError, type ObjectStore, type Queue, type QueueMessage, type SendOptions } from './ports.js';

export interface LargePayloadOptions {
  /** Key prefix (no trailing '/') under which offloaded bodies are stored. @default 'queue-payloads' */
  prefix?: string;
  /** Bodies longer than this many UTF-8 bytes are offloaded. @default 262_144 (256 KiB) */
  maxInlineBytes?: number;
  /** Tags of the offloaded objects (e.g. so a lifecycle rule expires them). @default none */
  tags?: Record<string, string>;
}

/** A pointer could not be resolved: its object is missing or unreadable. `key` names the object. */
export class LargePayloadError extends PortError {
  constructor(readonly key: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LargePayloadError';
  }
}

const POINTER_FIELD = '$pointer';

interface ResolvedOptions {
  prefix: string;
  maxInlineBytes: number;
}

function resolveOptions(opts: LargePayloadOptions): ResolvedOptions {
  const prefix = (opts.prefix ?? 'queue-payloads').replace(/\/+$/, '');
  const maxInlineBytes = opts.maxInlineBytes ?? 262_144;
  if (prefix === '') throw new RangeError('large payloads: prefix must not be empty');
  if (!(Number.isInteger(maxInlineBytes) && maxInlineBytes >= 64)) {
    throw new RangeError(`large payloads: maxInlineBytes must be an integer >= 64, got ${maxInlineBytes}`);
  }
  return { prefix, maxInlineBytes };
}

/** The key a pointer body names, or undefined when the body is not a pointer. */
export function pointerKey(body: string): string | undefined {
  if (!body.startsWith('{') || !body.includes(POINTER_FIELD)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const keys = Object.keys(parsed);
  const key = (parsed as Record<string, unknown>)[POINTER_FIELD];
  return keys.length === 1 && typeof key === 'string' ? key : undefined;
}

/** The body to put on the queue: the body itself, or a pointer after writing it to the store. */
export async function offloadPayload(body: string, store: ObjectStore, opts: LargePayloadOptions = {}): Promise<string> {
  const { prefix, maxInlineBytes } = resolveOptions(opts);
  if (Buffer.byteLength(body, 'utf8') <= maxInlineBytes && pointerKey(body) === undefined) return body;
  const key = `${prefix}/${createHash('sha256').update(body, 'utf8').digest('hex')}.json`;
  await store.put(key, body, { contentType: 'application/json', tags: opts.tags });
  return JSON.stringify({ [POINTER_FIELD]: key });
}

/** The original body of a received message body: itself, or what its pointer names. */
export async function resolvePayload(body: string, store: ObjectStore): Promise<string> {
  const key = pointerKey(body);
  if (key === undefined) return body;
  try {
    const { body: bytes } = await store.get(key);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  } catch (err) {
    const why = err instanceof NotFoundError ? 'is missing' : 'could not be read';
    throw new LargePayloadError(key, `message payload ${key} ${why}`, { cause: err });
  }
}

/**
 * Wraps a queue so that large bodies go through the store. `delete` and `release` pass the
 * message through (they use only id and receipt).
 *
 * If a received pointer cannot be resolved, `receive` releases the messages it did resolve (so
 * they are redelivered at once), leaves the failed ones in flight (they come back after the
 * visibility timeout and end in the dead-letter queue), and throws LargePayloadError.
 */
export function withLargePayloads(queue: Queue, store: ObjectStore, opts: LargePayloadOptions = {}): Queue {
  const options = resolveOptions(opts);
  return {
    get name() {
      return queue.name;
    },
    async send(body: string, sendOptions?: SendOptions): Promise<void> {
      await queue.send(await offloadPayload(body, store, options), sendOptions);
    },
    async sendBatch(entries: { body: string; options?: SendOptions }[]): Promise<void> {
      const bodies = await Promise.all(entries.map((e) => offloadPayload(e.body, store, options)));
      await queue.sendBatch(entries.map((e, i) => ({ body: bodies[i], options: e.options })));
    },
    async receive(max: number, waitSeconds?: number): Promise<QueueMessage[]> {
      const messages = await queue.receive(max, waitSeconds);
      const settled = await Promise.allSettled(messages.map((m) => resolvePayload(m.body, store)));
      const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (!failure) {
        return messages.map((m, i) => ({ ...m, body: (settled[i] as PromiseFulfilledResult<string>).value }));
      }
      await Promise.all(messages.filter((_, i) => settled[i].status === 'fulfilled').map((m) => queue.release(m, 0)));
      throw failure.reason;
    },
    delete: (message: QueueMessage) => queue.delete(message),
    release: (message: QueueMessage, seconds?: number) => queue.release(message, seconds),
    depth: () => queue.depth(),
  };
}
