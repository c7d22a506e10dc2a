/**
 * A stand-in for Lambda's SQS event source mapping, for end-to-end tests against the emulator
 * (fauxqs has no event source mappings, see test/contract/object-store.contract.ts).
 *
 *   const workers = new LambdaPoller({ sqs, queueUrl, queueArn, handler: worker.handler, batchSize: 1, concurrency: 4 });
 *   const aggregator = new LambdaPoller({ ..., handler: aggregator.handler, batchSize: 10 });
 *   await pollUntil([workers, aggregator], () => runEnded(...), { timeoutMs: 60_000 });
 *
 * Each of `concurrency` loops does what one poller of the mapping does: ReceiveMessage (long
 * poll, up to `batchSize` messages, every system and message attribute), build the SQSEvent
 * Lambda would build, invoke the handler, then:
 *
 * - the handler returned `{ batchItemFailures }` (ReportBatchItemFailures on): delete the records
 *   that are not listed; the listed ones stay in flight;
 * - the handler returned nothing: delete every record;
 * - the handler threw: delete nothing (Lambda treats the whole batch as failed).
 *
 * Records not deleted come back as Lambda's do: the poller leaves them in flight (it does not
 * call ChangeMessageVisibility), so they reappear when the queue's visibility timeout runs out,
 * every retry waiting a full timeout. SQS counts the receives and moves a message to the
 * dead-letter queue after maxReceiveCount, as on AWS. (Tests keep retries quick with short
 * visibility timeouts on the queues, not with a retry mode Lambda does not have.)
 *
 * `intercept` simulates a function instance that dies mid-task: a record it marks 'crash' is
 * received (so it is in flight and its receive is counted) but neither handed to the handler nor
 * deleted; it reappears after the visibility timeout.
 *
 * What is not mimicked: Lambda's scaling of pollers with queue depth, batching windows, the
 * 6 MB payload limit of an invocation, and throttling. For a FIFO queue Lambda keeps at most one
 * batch per message group in flight; use `concurrency: 1` for FIFO queues (the emulator already
 * holds a group back while one of its messages is in flight).
 */
import { randomUUID } from 'node:crypto';
import {
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  type Message,
  type MessageAttributeValue,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord, SQSRecordAttributes } from 'aws-lambda';

export type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | void | undefined>;

export interface LambdaPollerOptions {
  sqs: SQSClient;
  queueUrl: string;
  /** The queue's ARN, for records' eventSourceARN. */
  queueArn: string;
  handler: SqsHandler;
  /** Records per invocation, 1–10 (the SQS receive limit). @default 10 */
  batchSize?: number;
  /** Concurrent pollers, each invoking the handler one batch at a time. @default 1 */
  concurrency?: number;
  /** Long-poll wait of each ReceiveMessage, seconds (short, so stop() is quick). @default 1 */
  waitSeconds?: number;
  /** Decide per received record: deliver it, or simulate a crash (take it and drop it). @default deliver all */
  intercept?: (record: SQSRecord) => 'deliver' | 'crash';
  /** The function's name in the Lambda context. @default 'function' */
  functionName?: string;
  /** Function timeout for context.getRemainingTimeInMillis(). @default 60_000 */
  timeoutMs?: number;
  /** Region for eventSource records. @default 'us-east-1' */
  region?: string;
}

/** One delivery as the poller saw it. */
export interface Delivery {
  messageId: string;
  receiveCount: number;
  body: string;
  outcome: 'deleted' | 'failed' | 'thrown' | 'crashed';
}

export class LambdaPoller {
  /** Every record received, in order, with what happened to it. */
  readonly deliveries: Delivery[] = [];
  /** Errors thrown by the handler (the batch was left in the queue). */
  readonly handlerErrors: unknown[] = [];
  /** Errors of the poller itself (an SQS call failed); pollUntil rethrows the first. */
  readonly pollerErrors: unknown[] = [];
  invocations = 0;

  private readonly options: Required<Omit<LambdaPollerOptions, 'intercept'>> & Pick<LambdaPollerOptions, 'intercept'>;
  private loops: Promise<void>[] = [];
  private abort: AbortController | undefined;

  constructor(options: LambdaPollerOptions) {
    this.options = {
      batchSize: 10,
      concurrency: 1,
      waitSeconds: 1,
      functionName: 'function',
      timeoutMs: 60_000,
      region: 'us-east-1',
      ...options,
    };
    const { batchSize, concurrency } = this.options;
    if (!(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 10)) throw new RangeError(`batchSize must be 1..10, got ${batchSize}`);
    if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }

  get running(): boolean {
    return this.abort !== undefined;
  }

  start(): this {
    if (this.abort) return this;
    const abort = new AbortController();
    this.abort = abort;
    this.loops = Array.from({ length: this.options.concurrency }, () => this.loop(abort.signal));
    return this;
  }

  /** Stops every loop: a pending receive is aborted, an invocation in progress is awaited. */
  async stop(): Promise<void> {
    const abort = this.abort;
    if (!abort) return;
    abort.abort();
    await Promise.all(this.loops);
    this.loops = [];
    this.abort = undefined;
  }

  /** Deliveries of one message id, in order. */
  deliveriesOf(messageId: string): Delivery[] {
    return this.deliveries.filter((d) => d.messageId === messageId);
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const { sqs, queueUrl, batchSize, waitSeconds } = this.options;
    while (!signal.aborted) {
      let messages: Message[];
      try {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: batchSize,
            WaitTimeSeconds: waitSeconds,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
          { abortSignal: signal },
        );
        messages = out.Messages ?? [];
      } catch (error) {
        if (signal.aborted) return;
        this.pollerErrors.push(error);
        await sleep(200);
        continue;
      }
      if (messages.length === 0) continue;
      try {
        await this.invoke(messages.map((m) => this.toRecord(m)));
      } catch (error) {
        this.pollerErrors.push(error);
      }
    }
  }

  private async invoke(received: SQSRecord[]): Promise<void> {
    const { handler, sqs, queueUrl, intercept } = this.options;
    const records: SQSRecord[] = [];
    for (const record of received) {
      if (intercept?.(record) === 'crash') this.record(record, 'crashed');
      else records.push(record);
    }
    if (records.length === 0) return;
    this.invocations++;
    let response: SQSBatchResponse | void | undefined;
    try {
      response = await handler({ Records: records }, this.context());
    } catch (error) {
      this.handlerErrors.push(error);
      for (const r of records) this.record(r, 'thrown');
      return;
    }
    const failedIds = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    const succeeded = records.filter((r) => !failedIds.has(r.messageId));
    const failed = records.filter((r) => failedIds.has(r.messageId));
    if (succeeded.length > 0) {
      const out = await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: succeeded.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })),
        }),
      );
      if (out.Failed?.length) throw new Error(`DeleteMessageBatch failed: ${JSON.stringify(out.Failed)}`);
    }
    for (const r of succeeded) this.record(r, 'deleted');
    for (const r of failed) this.record(r, 'failed');
  }

  private record(record: SQSRecord, outcome: Delivery['outcome']) {
    this.deliveries.push({
      messageId: record.messageId,
      receiveCount: Number(record.attributes.ApproximateReceiveCount),
      body: record.body,
      outcome,
    });
  }

  /** The record Lambda builds from a received message. */
  private toRecord(m: Message): SQSRecord {
    const a = m.Attributes ?? {};
    const attributes: SQSRecordAttributes = {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? '000000000000',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(a.SequenceNumber ? { SequenceNumber: a.SequenceNumber } : {}),
      ...(a.MessageGroupId ? { MessageGroupId: a.MessageGroupId } : {}),
      ...(a.MessageDeduplicationId ? { MessageDeduplicationId: a.MessageDeduplicationId } : {}),
    };
    return {
      messageId: m.MessageId ?? '',
      receiptHandle: m.ReceiptHandle ?? '',
      body: m.Body ?? '',
      attributes,
      messageAttributes: toRecordAttributes(m.MessageAttributes),
      md5OfBody: m.MD5OfBody ?? '',
      eventSource: 'aws:sqs',
      eventSourceARN: this.options.queueArn,
      awsRegion: this.options.region,
    };
  }

  private context(): Context {
    const { functionName, region, timeoutMs } = this.options;
    const deadline = Date.now() + timeoutMs;
    const awsRequestId = randomUUID();
    return {
      callbackWaitsForEmptyEventLoop: true,
      functionName,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${functionName}`,
      memoryLimitInMB: '1024',
      awsRequestId,
      logGroupName: `/aws/lambda/${functionName}`,
      logStreamName: `local/${awsRequestId}`,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
  }
}

/** SQS message attributes in the shape Lambda gives them to handlers (camelCase, list fields). */
function toRecordAttributes(attributes: Record<string, MessageAttributeValue> | undefined): SQSMessageAttributes {
  const out: SQSMessageAttributes = {};
  for (const [name, v] of Object.entries(attributes ?? {})) {
    out[name] = {
      dataType: v.DataType ?? 'String',
      ...(v.StringValue !== undefined ? { stringValue: v.StringValue } : {}),
      ...(v.BinaryValue !== undefined ? { binaryValue: Buffer.from(v.BinaryValue).toString('base64') } : {}),
      stringListValues: v.StringListValues ?? [],
      binaryListValues: (v.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
    };
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class PollTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PollTimeoutError';
  }
}

/**
 * Starts the pollers (those not running), checks `until` every `intervalMs`, and stops them all
 * when it holds, when `timeoutMs` passes (then rejects with PollTimeoutError), or when a poller's
 * own SQS call fails (then rejects with that error). The pollers are stopped in every case.
 */
export async function pollUntil(
  pollers: LambdaPoller[],
  until: () => Promise<boolean> | boolean,
  options: { timeoutMs: number; intervalMs?: number; description?: string },
): Promise<void> {
  const interval = options.intervalMs ?? 100;
  const deadline = Date.now() + options.timeoutMs;
  for (const p of pollers) p.start();
  try {
    for (;;) {
      const error = pollers.flatMap((p) => p.pollerErrors)[0];
      if (error) throw error;
      if (await until()) return;
      if (Date.now() > deadline) {
        throw new PollTimeoutError(`${options.description ?? 'condition'} did not hold within ${options.timeoutMs} ms`);
      }
      await sleep(interval);
    }
  } finally {
    await Promise.all(pollers.map((p) => p.stop()));
  }
}
