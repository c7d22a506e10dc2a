/**
 * Queue on one SQS queue (AWS SDK v3).
 *
 * The SQS calls live in a plain adapter; when a `store` is given, bodies over `maxInlineBytes`
 * travel through it via `withLargePayloads` (lib/pipeline/large-payloads.ts), the same wrapper
 * local runs can put around a MemoryQueue.
 *
 * - send / sendBatch pass groupId and deduplicationId as MessageGroupId / MessageDeduplicationId
 *   (FIFO queues; SQS rejects MessageDeduplicationId on standard queues). sendBatch sends
 *   SendMessageBatch requests of at most 10 entries and `maxBatchBytes` bytes, and throws a
 *   PortError naming every failed entry (entries of other requests may have been sent).
 * - receive asks for ApproximateReceiveCount; at most 10 messages and 20 s of long polling, the
 *   SQS limits.
 * - release is ChangeMessageVisibility; releasing a message that is no longer in flight is a no-op.
 * - depth is ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible (delayed
 *   messages are not counted).
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient,
  type SendMessageBatchRequestEntry,
} from '@aws-sdk/client-sqs';
import pMap from 'p-map';
import { PortError, type ObjectStore, type Queue, type QueueMessage, type SendOptions } from '../../lib/pipeline/ports.js';
import { withLargePayloads } from '../../lib/pipeline/large-payloads.js';

/**
 * SendMessageBatch requests in flight at once on a standard queue: a round's tasks go out in one
 * wave of requests (400 tasks, 40 requests) rather than three, within the 50 keep-alive sockets
 * the SDK's HTTP handler keeps per client.
 */
export const SEND_CONCURRENCY = 48;

export interface SqsQueueOptions {
  /** The SDK client (region, credentials, endpoint are its business). */
  readonly client: SQSClient;
  /** The queue's URL. */
  readonly queueUrl: string;
  /** Queue.name. @default the last path segment of queueUrl */
  readonly name?: string;
  /** Store for bodies over maxInlineBytes. @default none: every body is sent inline */
  readonly store?: ObjectStore;
  /** Key prefix for offloaded bodies; requires `store`. @default 'queue-payloads' */
  readonly payloadPrefix?: string;
  /** Tags of offloaded payload objects. @default none */
  readonly payloadTags?: Record<string, string>;
  /** Largest body sent inline, UTF-8 bytes; requires `store`. @default 262_144 (256 KiB) */
  readonly maxInlineBytes?: number;
  /**
   * Largest total of bodies in one SendMessageBatch request. SQS allows 1 MiB since 2025 (256 KiB
   * before, and for queues whose MaximumMessageSize is still 256 KiB).
   * @default 262_144
   */
  readonly maxBatchBytes?: number;
}

const MAX_BATCH_ENTRIES = 10;
const MAX_RECEIVE = 10;
const MAX_WAIT_SECONDS = 20;

export class SqsQueue implements Queue {
  readonly name: string;
  readonly queueUrl: string;
  private readonly inner: Queue;

  constructor(options: SqsQueueOptions) {
    if (!options.queueUrl) throw new RangeError('SqsQueue: queueUrl is required');
    if (!options.store && (options.payloadPrefix !== undefined || options.maxInlineBytes !== undefined)) {
      throw new RangeError('SqsQueue: payloadPrefix and maxInlineBytes need a store');
    }
    this.queueUrl = options.queueUrl;
    this.name = options.name ?? decodeURIComponent(new URL(options.queueUrl).pathname.split('/').filter(Boolean).pop() ?? '');
    const plain = new PlainSqsQueue(options.client, options.queueUrl, this.name, options.maxBatchBytes ?? 262_144);
    this.inner = options.store
      ? withLargePayloads(plain, options.store, { prefix: options.payloadPrefix, maxInlineBytes: options.maxInlineBytes, tags: options.payloadTags })
      : plain;
  }

  send(body: string, options?: SendOptions): Promise<void> {
    return this.inner.send(body, options);
  }

  sendBatch(entries: { body: string; options?: SendOptions }[]): Promise<void> {
    return this.inner.sendBatch(entries);
  }

  receive(max: number, waitSeconds?: number): Promise<QueueMessage[]> {
    return this.inner.receive(max, waitSeconds);
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
}

function describeError(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const e = err as { name?: string; Code?: string; message?: string };
  return `${e.Code ?? e.name ?? 'Error'}: ${e.message ?? ''}`;
}

function isNotInFlight(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: string; Code?: string; message?: string };
  const code = e.Code ?? e.name ?? '';
  // MessageNotInflight; or InvalidParameterValue "... receipt handle has expired".
  return code.endsWith('MessageNotInflight') || /receipt handle has expired/i.test(e.message ?? '');
}

/** The SQS calls, nothing else. */
class PlainSqsQueue implements Queue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    readonly name: string,
    private readonly maxBatchBytes: number,
  ) {}

  async send(body: string, options: SendOptions = {}): Promise<void> {
    try {
      await this.client.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: body,
          MessageGroupId: options.groupId,
          MessageDeduplicationId: options.deduplicationId,
        }),
      );
    } catch (err) {
      throw this.error('SendMessage', err);
    }
  }

  async sendBatch(entries: { body: string; options?: SendOptions }[]): Promise<void> {
    const failures: string[] = [];
    // Batches go out concurrently on a standard queue (a round's thousands of tasks in a few
    // round trips), one after another on a FIFO queue, whose order within a group must hold.
    const send = async (chunk: { index: number; entry: { body: string; options?: SendOptions } }[]) => {
      const request: SendMessageBatchRequestEntry[] = chunk.map(({ index, entry }) => ({
        Id: String(index),
        MessageBody: entry.body,
        MessageGroupId: entry.options?.groupId,
        MessageDeduplicationId: entry.options?.deduplicationId,
      }));
      let out;
      try {
        out = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: request }));
      } catch (err) {
        const first = chunk[0].index;
        throw this.error(`SendMessageBatch (entries ${first}..${first + chunk.length - 1}; others may have been sent)`, err);
      }
      for (const f of out.Failed ?? []) {
        failures.push(`#${f.Id}: ${f.Code}${f.SenderFault ? ' (sender fault)' : ''}${f.Message ? ` ${f.Message}` : ''}`);
      }
    };
    await pMap([...this.chunks(entries)], send, { concurrency: this.name.endsWith('.fifo') ? 1 : SEND_CONCURRENCY });
    if (failures.length > 0) {
      throw new PortError(
        `SQS SendMessageBatch on ${this.name}: ${failures.length} of ${entries.length} entries failed: ${failures.join('; ')}`,
      );
    }
  }

  async receive(max: number, waitSeconds = 0): Promise<QueueMessage[]> {
    const count = Math.min(MAX_RECEIVE, Math.floor(max));
    if (!(count >= 1)) return [];
    try {
      const out = await this.client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: count,
          WaitTimeSeconds: Math.min(MAX_WAIT_SECONDS, Math.max(0, Math.ceil(waitSeconds))),
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
        }),
      );
      return (out.Messages ?? []).map((m) => ({
        id: m.MessageId ?? '',
        body: m.Body ?? '',
        receipt: m.ReceiptHandle ?? '',
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
      }));
    } catch (err) {
      throw this.error('ReceiveMessage', err);
    }
  }

  async delete(message: QueueMessage): Promise<void> {
    try {
      await this.client.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: message.receipt }));
    } catch (err) {
      throw this.error('DeleteMessage', err);
    }
  }

  async release(message: QueueMessage, seconds = 0): Promise<void> {
    try {
      await this.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.queueUrl,
          ReceiptHandle: message.receipt,
          VisibilityTimeout: Math.max(0, Math.ceil(seconds)),
        }),
      );
    } catch (err) {
      if (isNotInFlight(err)) return; // already visible again, or deleted: nothing to release
      throw this.error('ChangeMessageVisibility', err);
    }
  }

  async depth(): Promise<number> {
    try {
      const out = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.queueUrl,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      const attrs = out.Attributes ?? {};
      return Number(attrs.ApproximateNumberOfMessages ?? 0) + Number(attrs.ApproximateNumberOfMessagesNotVisible ?? 0);
    } catch (err) {
      throw this.error('GetQueueAttributes', err);
    }
  }

  /** Consecutive runs of at most 10 entries and maxBatchBytes bytes (one big entry goes alone). */
  private *chunks(entries: { body: string; options?: SendOptions }[]) {
    let chunk: { index: number; entry: { body: string; options?: SendOptions } }[] = [];
    let bytes = 0;
    for (const [index, entry] of entries.entries()) {
      const size = Buffer.byteLength(entry.body, 'utf8');
      if (chunk.length > 0 && (chunk.length === MAX_BATCH_ENTRIES || bytes + size > this.maxBatchBytes)) {
        yield chunk;
        chunk = [];
        bytes = 0;
      }
      chunk.push({ index, entry });
      bytes += size;
    }
    if (chunk.length > 0) yield chunk;
  }

  private error(op: string, err: unknown): PortError {
    return new PortError(`SQS ${op} on ${this.name} failed: ${describeError(err)}`, { cause: err });
  }
}
