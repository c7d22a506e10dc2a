/**
 * In-memory Queue with SQS semantics, for tests and local runs.
 *
 * - A received message is invisible for the visibility timeout; unless deleted it becomes
 *   visible again and is redelivered with receiveCount + 1 and a new receipt.
 * - With a dead-letter queue, a message that has been delivered maxReceiveCount times and was not
 *   deleted moves there (same id and body) instead of being delivered again, as SQS does. The
 *   move is made by the next receive or depth of this queue.
 * - FIFO: every message needs a groupId; messages of a group are delivered in send order, and
 *   none while an earlier one of the group is in flight (one receive may return several of a
 *   group, in order, as SQS does). A message whose deduplicationId (default: SHA-256 of the body,
 *   i.e. SQS content-based deduplication) was seen in the last 5 minutes is dropped. On a standard
 *   queue groupId and deduplicationId are ignored.
 * - Stale receipts (the message was redelivered or deleted since) make `delete` and `release`
 *   no-ops, never errors.
 * - Bodies are checked as SQS checks them: not empty, at most maxMessageBytes of UTF-8, and only
 *   the characters SQS accepts.
 *
 * Time: visibility and deduplication use the injectable `now` clock, so tests can move time
 * without sleeping. A long-poll `receive(max, waitSeconds)` waits in real time and returns as soon
 * as a message is sent, released or unblocked (or a visibility timeout runs out).
 */
import { createHash, randomUUID } from 'node:crypto';
import { PortError, type Queue, type QueueMessage, type SendOptions } from './ports.js';

export interface MemoryQueueOptions {
  /** The queue's name (Queue.name). @default 'memory-queue' */
  name?: string;
  /** Seconds a received message stays invisible unless deleted or released. @default 30 */
  visibilityTimeoutSeconds?: number;
  /**
   * Deliveries after which an undeleted message moves to `deadLetter` (SQS redrive policy).
   * Requires `deadLetter`. @default Infinity (redeliver forever)
   */
  maxReceiveCount?: number;
  /** Dead-letter queue; FIFO exactly when this queue is. Requires `maxReceiveCount`. @default none */
  deadLetter?: MemoryQueue;
  /** FIFO semantics (see above). @default false */
  fifo?: boolean;
  /** Largest accepted body, UTF-8 bytes (the SQS limit). @default 1_048_576 */
  maxMessageBytes?: number;
  /** Clock in milliseconds. @default Date.now */
  now?: () => number;
}

/** SQS's deduplication interval. */
export const DEDUPLICATION_WINDOW_MS = 5 * 60 * 1000;

/** Characters SQS accepts in a body: #x9 | #xA | #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF. */
const INVALID_BODY_CHAR = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/** How long one wait slice of a long poll may last, so a moved test clock is noticed. */
const MAX_WAIT_SLICE_MS = 1000;
const MIN_WAIT_SLICE_MS = 10;

interface Entry {
  id: string;
  body: string;
  groupId?: string;
  receiveCount: number;
  /** Clock time (ms) from which the message may be delivered; in flight while > now. */
  visibleAt: number;
  /** Receipt of the latest delivery. */
  receipt?: string;
}

export class MemoryQueue implements Queue {
  readonly name: string;
  readonly fifo: boolean;
  readonly visibilityTimeoutSeconds: number;
  readonly maxReceiveCount: number;
  readonly deadLetter?: MemoryQueue;
  private readonly maxMessageBytes: number;
  private readonly now: () => number;
  /** Messages by id, in send order (Map keeps insertion order; redelivery keeps the place). */
  private readonly entries = new Map<string, Entry>();
  /** FIFO: deduplication id -> clock time its window ends. */
  private readonly dedup = new Map<string, number>();
  private readonly waiters = new Set<() => void>();

  constructor(options: MemoryQueueOptions = {}) {
    this.name = options.name ?? 'memory-queue';
    this.fifo = options.fifo ?? false;
    this.visibilityTimeoutSeconds = options.visibilityTimeoutSeconds ?? 30;
    this.maxReceiveCount = options.maxReceiveCount ?? Number.POSITIVE_INFINITY;
    this.deadLetter = options.deadLetter;
    this.maxMessageBytes = options.maxMessageBytes ?? 1_048_576;
    this.now = options.now ?? Date.now;

    const where = `MemoryQueue ${this.name}`;
    if (!(Number.isFinite(this.visibilityTimeoutSeconds) && this.visibilityTimeoutSeconds >= 0)) {
      throw new RangeError(`${where}: visibilityTimeoutSeconds must be >= 0, got ${this.visibilityTimeoutSeconds}`);
    }
    const count = this.maxReceiveCount;
    if (!(Number.isInteger(count) || count === Number.POSITIVE_INFINITY) || count < 1) {
      throw new RangeError(`${where}: maxReceiveCount must be an integer >= 1, got ${this.maxReceiveCount}`);
    }
    if (this.deadLetter && options.maxReceiveCount === undefined) {
      throw new RangeError(`${where}: deadLetter needs maxReceiveCount`);
    }
    if (!this.deadLetter && options.maxReceiveCount !== undefined) {
      throw new RangeError(`${where}: maxReceiveCount needs a deadLetter queue (SQS redrive policy)`);
    }
    if (this.deadLetter === this) throw new RangeError(`${where}: a queue cannot be its own dead-letter queue`);
    if (this.deadLetter && this.deadLetter.fifo !== this.fifo) {
      const kind = this.fifo ? 'FIFO' : 'standard';
      throw new RangeError(`${where}: the dead-letter queue of a ${kind} queue must be ${kind} too`);
    }
    if (!(Number.isInteger(this.maxMessageBytes) && this.maxMessageBytes >= 1)) {
      throw new RangeError(`${where}: maxMessageBytes must be a positive integer, got ${this.maxMessageBytes}`);
    }
  }

  async send(body: string, options: SendOptions = {}): Promise<void> {
    this.enqueue(this.prepare(body, options));
  }

  async sendBatch(entries: { body: string; options?: SendOptions }[]): Promise<void> {
    const prepared = entries.map((e) => this.prepare(e.body, e.options ?? {})); // all valid, or none sent
    for (const p of prepared) this.enqueue(p);
  }

  async receive(max: number, waitSeconds = 0): Promise<QueueMessage[]> {
    const deadline = Date.now() + Math.max(0, waitSeconds) * 1000;
    for (;;) {
      const got = this.take(max);
      if (got.length > 0) return got;
      const remaining = deadline - Date.now();
      if (remaining <= 0 || max < 1) return got;
      await this.waitForChange(Math.min(remaining, this.msUntilNextExpiry(), MAX_WAIT_SLICE_MS));
    }
  }

  async delete(message: QueueMessage): Promise<void> {
    const entry = this.entries.get(message.id);
    if (!entry || entry.receipt !== message.receipt) return; // stale receipt: no-op
    this.entries.delete(message.id);
    if (this.fifo) this.notify(); // its group may be unblocked
  }

  async release(message: QueueMessage, seconds = 0): Promise<void> {
    if (!(Number.isFinite(seconds) && seconds >= 0)) {
      throw new RangeError(`MemoryQueue ${this.name}: release seconds must be >= 0, got ${seconds}`);
    }
    const entry = this.entries.get(message.id);
    const now = this.now();
    if (!entry || entry.receipt !== message.receipt || entry.visibleAt <= now) return; // not in flight
    entry.visibleAt = now + seconds * 1000;
    if (seconds === 0) this.notify();
  }

  async depth(): Promise<number> {
    this.sweep(this.now());
    return this.entries.size;
  }

  private prepare(body: string, options: SendOptions): Entry & { dedupId?: string } {
    const where = `MemoryQueue ${this.name}`;
    if (typeof body !== 'string' || body.length === 0) throw new PortError(`${where}: message body must be a non-empty string`);
    const bytes = Buffer.byteLength(body, 'utf8');
    if (bytes > this.maxMessageBytes) {
      throw new PortError(`${where}: message of ${bytes} bytes exceeds the limit of ${this.maxMessageBytes}`);
    }
    const bad = INVALID_BODY_CHAR.exec(body);
    if (bad) {
      const cp = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      throw new PortError(`${where}: message body contains U+${cp} at index ${bad.index}, which SQS rejects`);
    }
    const entry: Entry & { dedupId?: string } = {
      id: randomUUID(),
      body,
      receiveCount: 0,
      visibleAt: Number.NEGATIVE_INFINITY,
    };
    if (this.fifo) {
      if (!options.groupId) throw new PortError(`${where}: a FIFO queue needs a groupId on every message`);
      entry.groupId = options.groupId;
      entry.dedupId = options.deduplicationId ?? createHash('sha256').update(body).digest('hex');
    }
    return entry;
  }

  private enqueue(entry: Entry & { dedupId?: string }): void {
    const { dedupId, ...stored } = entry;
    if (dedupId !== undefined) {
      const now = this.now();
      for (const [id, until] of this.dedup) if (until <= now) this.dedup.delete(id);
      if (this.dedup.has(dedupId)) return; // duplicate within the window: accepted, not delivered
      this.dedup.set(dedupId, now + DEDUPLICATION_WINDOW_MS);
    }
    this.entries.set(stored.id, stored);
    this.notify();
  }

  /** Moves exhausted visible messages to the dead-letter queue. */
  private sweep(now: number): void {
    if (!this.deadLetter) return;
    for (const entry of this.entries.values()) {
      if (entry.visibleAt <= now && entry.receiveCount >= this.maxReceiveCount) {
        this.entries.delete(entry.id);
        this.deadLetter.adopt(entry);
      }
    }
  }

  private adopt(entry: Entry): void {
    this.entries.set(entry.id, { ...entry, visibleAt: Number.NEGATIVE_INFINITY, receipt: undefined });
    this.notify();
  }

  private take(max: number): QueueMessage[] {
    const limit = Math.floor(max);
    if (!(limit >= 1)) return [];
    const now = this.now();
    this.sweep(now);
    const blocked = new Set<string>();
    if (this.fifo) {
      for (const e of this.entries.values()) if (e.visibleAt > now && e.groupId !== undefined) blocked.add(e.groupId);
    }
    const out: QueueMessage[] = [];
    for (const e of this.entries.values()) {
      if (out.length >= limit) break;
      if (e.visibleAt > now) continue; // in flight
      if (e.groupId !== undefined && blocked.has(e.groupId)) continue;
      e.receiveCount += 1;
      e.receipt = randomUUID();
      e.visibleAt = now + this.visibilityTimeoutSeconds * 1000;
      out.push({ id: e.id, body: e.body, receipt: e.receipt, receiveCount: e.receiveCount });
    }
    return out;
  }

  private msUntilNextExpiry(): number {
    const now = this.now();
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.entries.values()) if (e.visibleAt > now) next = Math.min(next, e.visibleAt - now);
    return Math.max(MIN_WAIT_SLICE_MS, next);
  }

  private waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  private notify(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
