/**
 * What the queue handlers do with a message that failed (docs/deploy.md §9). A transient failure
 * (lib/errors.ts `isRetryable`) is redelivered by the queue, up to its redrive policy's three
 * deliveries. A permanent one is not: it would fail the same way three times, keeping its run
 * `running` for three visibility timeouts. So:
 *
 * - a task (worker.ts handleTaskDelivery) that fails for good is reported to the aggregator at
 *   once (`task-failed`: the run fails with the reason), sent to the tasks dead-letter queue, and
 *   acknowledged;
 * - an update whose run cannot go on (update-delivery.ts) fails that run with the reason
 *   and is acknowledged: the aggregator is the run's writer, and the run's failure keeps the
 *   reason (`clusterwise status`); an update that does not even parse goes to the updates
 *   dead-letter queue, and fails the run it names, if any;
 * - an upload that can never be fitted goes to the ingest failures queue (functions/ingest.ts).
 *
 * Without a dead-letter port (the local runner) a permanent failure is rethrown after the report,
 * and the queue's own redrive moves the message after its last delivery.
 */
import { createHash } from 'node:crypto';
import type { Queue, QueueMessage, SendOptions } from './ports.js';
import { DatasetName, type TaskFailedMessage } from './protocol.js';

/**
 * The `task-failed` message for a failure of a message with this body: from the parsed task when
 * there is one, else from whatever run the raw body names. Undefined when it names none (then the
 * message can only be dead-lettered).
 */
export function failureOf(body: string, reason: string, task?: { dataset: string; runId: string; taskId?: string; round?: { id: string } }): TaskFailedMessage | undefined {
  let ids: { dataset?: unknown; runId?: unknown; taskId?: unknown; round?: { id?: unknown } } | undefined = task;
  if (!ids) {
    try {
      ids = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  if (typeof ids !== 'object' || ids === null || !DatasetName.safeParse(ids.dataset).success) return undefined;
  if (typeof ids.runId !== 'string' || ids.runId === '') return undefined;
  return {
    kind: 'task-failed',
    dataset: ids.dataset as string,
    runId: ids.runId,
    roundId: typeof ids.round?.id === 'string' ? ids.round.id : 'unknown',
    taskId: typeof ids.taskId === 'string' ? ids.taskId : 'unknown',
    reason,
  };
}

/**
 * Sends `body` to the dead-letter queue `queue`, where the queue's redrive policy would have put it
 * after its last delivery; the caller then acknowledges the delivery. False when there is no
 * dead-letter port: the caller rethrows, and the redrive does it later.
 */
export async function deadLetter(queue: Queue | undefined, message: QueueMessage, options?: Omit<SendOptions, 'deduplicationId'>): Promise<boolean> {
  if (!queue) return false;
  // A FIFO dead-letter queue needs a deduplication id: this delivery's message, so a repeated
  // send after a crash is dropped.
  const fifo = options?.groupId !== undefined;
  const deduplicationId = createHash('sha256').update(message.id).digest('hex');
  await queue.send(message.body, fifo ? { ...options, deduplicationId } : options);
  return true;
}
