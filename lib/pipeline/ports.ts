/**
 * Ports: the two pieces of infrastructure every pipeline role talks to.
 *
 * Locally they are a folder (or memory) and an in-memory queue; on AWS they are S3 and SQS.
 * Roles in lib/pipeline take these interfaces and nothing else, so the same planner, worker
 * and aggregator code runs in both places. Adapters must pass test/contract/*.test.ts.
 */

import { ClusterwiseError } from '../errors.js';

/**
 * Base class of every error the ports raise, so callers can tell port failures apart. Retryable:
 * a storage or queue call that failed, or a conditional write that lost, may pass when redone.
 */
export class PortError extends ClusterwiseError {
  override readonly retryable: boolean = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PortError';
  }
}

/** The object does not exist (S3 NoSuchKey / 404). */
export class NotFoundError extends PortError {
  constructor(readonly key: string, options?: { cause?: unknown }) {
    super(`object not found: ${key}`, options);
    this.name = 'NotFoundError';
  }
}

/**
 * A conditional put lost: If-Match named an ETag the object no longer has, or If-None-Match: *
 * found an object already there (S3 412 PreconditionFailed / 409 ConditionalRequestConflict).
 */
export class PreconditionFailedError extends PortError {
  constructor(readonly key: string, options?: { cause?: unknown }) {
    super(`precondition failed for ${key}`, options);
    this.name = 'PreconditionFailedError';
  }
}

export interface ObjectInfo {
  key: string;
  /** Size in bytes. */
  size: number;
  /** Opaque version tag; changes whenever the content changes (S3 ETag). */
  etag: string;
}

export interface GetResult {
  body: Uint8Array;
  etag: string;
}

export interface PutOptions {
  /** Write only if the object's current ETag equals this one. */
  ifMatch?: string;
  /** Write only if no object exists under the key. */
  ifNoneMatch?: '*';
  contentType?: string;
  /** Object tags (S3 lifecycle rules select on them); stores without tagging ignore them. */
  tags?: Record<string, string>;
}

export interface ObjectStore {
  /** Whole object; NotFoundError when absent. */
  get(key: string): Promise<GetResult>;
  /**
   * Bytes [start, end) of the object (end exclusive, clamped to the size); NotFoundError when
   * absent; with ifMatch, PreconditionFailedError when the object's ETag is another (S3 GET If-Match).
   */
  getRange(key: string, start: number, end: number, options?: { ifMatch?: string }): Promise<Uint8Array>;
  /** Metadata only; undefined when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Write; PreconditionFailedError when a condition does not hold. Returns the new ETag. */
  put(key: string, body: Uint8Array | string, options?: PutOptions): Promise<{ etag: string }>;
  /** Every object whose key starts with prefix, in key order (all pages). */
  list(prefix: string): Promise<ObjectInfo[]>;
  delete(key: string): Promise<void>;
}

/** One received message. `receipt` identifies this delivery (SQS receipt handle). */
export interface QueueMessage {
  id: string;
  body: string;
  receipt: string;
  /** How many times this message has been delivered, this delivery included. */
  receiveCount: number;
}

export interface SendOptions {
  /** FIFO queues: messages of one group are delivered in order, one at a time. */
  groupId?: string;
  /** FIFO queues: a second message with the same id within 5 minutes is dropped. */
  deduplicationId?: string;
}

/**
 * A message queue with at-least-once delivery: a received message stays invisible for the
 * visibility timeout and comes back unless deleted; after maxReceiveCount deliveries it moves to
 * the dead-letter queue.
 */
export interface Queue {
  readonly name: string;
  send(body: string, options?: SendOptions): Promise<void>;
  sendBatch(entries: { body: string; options?: SendOptions }[]): Promise<void>;
  /** Up to max messages (possibly none), each invisible to others for the visibility timeout. */
  receive(max: number, waitSeconds?: number): Promise<QueueMessage[]>;
  /** Acknowledge: the message will not be delivered again. */
  delete(message: QueueMessage): Promise<void>;
  /** Make a received message visible again after `seconds` (0: at once). */
  release(message: QueueMessage, seconds?: number): Promise<void>;
  /** Approximate number of visible plus in-flight messages. */
  depth(): Promise<number>;
}
