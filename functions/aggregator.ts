/** Aggregator Lambda (FIFO updates queue, group = run id): folds results into the posterior. */
import { processPartialResponse, SqsFifoPartialProcessorAsync } from '@aws-lambda-powertools/batch';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { handleUpdates } from '../lib/pipeline/aggregator.js';
import { parseMessage, UpdateMessage } from '../lib/pipeline/protocol.js';
import { createLogger, roleContext, toQueueMessage } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);
const processor = new SqsFifoPartialProcessorAsync();

async function record(record: SQSRecord): Promise<void> {
  try {
    const message = parseMessage(UpdateMessage, (await toQueueMessage(record, ctx)).body, 'updates');
    logger.appendKeys({ runId: message.runId, taskId: message.taskId });
    await handleUpdates(ctx, [message]);
  } catch (error) {
    // Reported as a batch item failure (retried, then dead-lettered); logged for the error-log alarm.
    logger.error('update failed', { messageId: record.messageId, receiveCount: record.attributes.ApproximateReceiveCount, error: error as Error });
    throw error;
  }
}

export const handler = async (event: SQSEvent, context: Context) => {
  logger.addContext(context);
  return processPartialResponse(event, record, processor, { context, throwOnFullBatchFailure: false });
};
