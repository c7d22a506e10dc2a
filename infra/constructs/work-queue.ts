/**
 * A queue with its own dead-letter queue, sized for the Lambda function that consumes it.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { DeduplicationScope, FifoThroughputLimit, Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { InvalidClusterwisePropsError } from '../clusterwise.js';

/**
 * AWS guidance for SQS event sources: visibility timeout at least six times the function timeout,
 * so that Lambda's retries of a throttled batch do not make the message visible again early.
 */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

export interface WorkQueueProps {
  /** Timeout of the function that consumes the queue; sets the visibility timeout. */
  readonly consumerTimeout: Duration;
  /**
   * FIFO queue (and FIFO dead-letter queue). Content-based deduplication stays off: senders give
   * explicit deduplication ids. High-throughput mode: deduplication and throughput per group.
   * @default false
   */
  readonly fifo?: boolean;
  /**
   * Deliveries before a message moves to the dead-letter queue.
   * @default 3
   */
  readonly maxReceiveCount?: number;
  /** @default RemovalPolicy.DESTROY (queues hold only work in flight) */
  readonly removalPolicy?: RemovalPolicy;
}

/** An encrypted, TLS-only queue with a dead-letter queue. */
export class WorkQueue extends Construct {
  public readonly queue: Queue;
  public readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: WorkQueueProps) {
    super(scope, id);
    const fifo = props.fifo ?? false;
    const maxReceiveCount = props.maxReceiveCount ?? 3;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.DESTROY;
    const fifoProps = fifo
      ? {
          fifo: true,
          contentBasedDeduplication: false,
        }
      : {};
    const visibility = props.consumerTimeout.toSeconds() * VISIBILITY_TIMEOUT_FACTOR;
    if (visibility > Duration.hours(12).toSeconds()) {
      throw new InvalidClusterwisePropsError([
        `${this.node.path}: visibility timeout ${visibility} s (${VISIBILITY_TIMEOUT_FACTOR} × consumer timeout) exceeds the SQS maximum of 12 hours`,
      ]);
    }

    this.deadLetterQueue = new Queue(this, 'DeadLetterQueue', {
      ...fifoProps,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy,
    });
    this.queue = new Queue(this, 'Queue', {
      ...fifoProps,
      ...(fifo
        ? { deduplicationScope: DeduplicationScope.MESSAGE_GROUP, fifoThroughputLimit: FifoThroughputLimit.PER_MESSAGE_GROUP_ID }
        : {}),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(visibility),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount },
      removalPolicy,
    });
  }
}
