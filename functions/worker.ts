/** Worker Lambda (tasks queue): one shard against one posterior version per record. */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { handleTaskDelivery } from '../lib/pipeline/worker.js';
import { containerKernel, createLogger, MAX_RECEIVE_COUNT, roleContext, toQueueMessage } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);
const processor = new BatchProcessor(EventType.SQS);

async function record(record: SQSRecord): Promise<void> {
  await handleTaskDelivery({ ...ctx, kernel: containerKernel() }, await toQueueMessage(record, ctx), MAX_RECEIVE_COUNT);
}

export const handler = async (event: SQSEvent, context: Context) => {
  logger.addContext(context);
  return processPartialResponse(event, record, processor, { context, throwOnFullBatchFailure: false });
};
