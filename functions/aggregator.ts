/**
 * Aggregator Lambda (FIFO updates queue, group = run id): the whole delivery batch is applied in
 * one call, each run's updates together, so each run's state is read and written once per batch
 * (lib/pipeline/update-delivery.ts). A run whose updates fail transiently has its records reported
 * failed and redelivered in order (partial batch responses, ReportBatchItemFailures); a run that
 * cannot go on is failed with the reason, and a record that does not parse is dead-lettered at once.
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { describeError } from '../lib/errors.js';
import type { QueueMessage } from '../lib/pipeline/ports.js';
import { handleUpdateDelivery } from '../lib/pipeline/update-delivery.js';
import { createLogger, roleContext, toQueueMessage } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  const failed: string[] = [];
  const delivered: QueueMessage[] = [];
  for (const record of event.Records) {
    try {
      delivered.push(await toQueueMessage(record, ctx));
    } catch (error) {
      // An offloaded payload that cannot be fetched: logged for the error-log alarm; retried, then dead-lettered.
      logger.error('update failed', { messageId: record.messageId, receiveCount: record.attributes.ApproximateReceiveCount, reason: describeError(error) });
      failed.push(record.messageId);
    }
  }
  const { retry } = await handleUpdateDelivery(ctx, delivered);
  failed.push(...retry);
  return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
};
