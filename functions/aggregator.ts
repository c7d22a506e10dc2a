/**
 * Aggregator Lambda (FIFO updates queue, group = run id): the whole delivery batch is applied in
 * one call, so each run's state is read and written once per batch (lib/pipeline/aggregator.ts).
 * A record that does not parse fails alone; if applying the batch fails, every parsed record is
 * reported failed and redelivered in order (partial batch responses, ReportBatchItemFailures).
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { handleUpdates } from '../lib/pipeline/aggregator.js';
import { parseMessage, UpdateMessage } from '../lib/pipeline/protocol.js';
import { createLogger, roleContext, toQueueMessage } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  logger.addContext(context);
  const failed: string[] = [];
  const parsed: { id: string; message: UpdateMessage }[] = [];
  for (const record of event.Records) {
    try {
      parsed.push({ id: record.messageId, message: parseMessage(UpdateMessage, (await toQueueMessage(record, ctx)).body, 'updates') });
    } catch (error) {
      // Logged for the error-log alarm; retried, then dead-lettered.
      logger.error('update failed', { messageId: record.messageId, receiveCount: record.attributes.ApproximateReceiveCount, error: error as Error });
      failed.push(record.messageId);
    }
  }
  try {
    if (parsed.length) await handleUpdates(ctx, parsed.map((p) => p.message));
  } catch (error) {
    logger.error('update failed', { messageIds: parsed.map((p) => p.id), error: error as Error });
    failed.push(...parsed.map((p) => p.id));
  }
  return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
};
