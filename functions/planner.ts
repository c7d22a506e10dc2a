/** Planner Lambda: the refit schedule (EventBridge) or a direct invocation starts runs. */
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { configuredDatasets, requestRefit, type RefitOutcome } from '../lib/pipeline/ingest.js';
import { DatasetName } from '../lib/pipeline/protocol.js';
import { containerKernel, createLogger, roleContext } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);

/** `{source: "schedule", datasets: [...]}` (empty: every dataset with a model.json) or `{dataset, overrides?}`. */
export const PlannerEvent = z.union([
  z.object({ source: z.literal('schedule'), datasets: z.array(DatasetName).default([]) }),
  z.object({ dataset: DatasetName, overrides: z.record(z.string(), z.unknown()).optional() }),
]);

export const handler = async (event: unknown, context: Context): Promise<Record<string, RefitOutcome | { error: string }>> => {
  logger.addContext(context);
  const request = PlannerEvent.parse(event);
  const kernel = containerKernel();
  const outcomes: Record<string, RefitOutcome | { error: string }> = {};
  if ('dataset' in request) {
    outcomes[request.dataset] = await requestRefit(ctx, request.dataset, kernel, request.overrides, { request: context.awsRequestId });
    return outcomes;
  }
  const datasets = request.datasets.length ? request.datasets : await configuredDatasets(ctx);
  for (const dataset of datasets) {
    try {
      // Lambda's retries of an asynchronous invocation keep its request id.
      outcomes[dataset] = await requestRefit(ctx, dataset, kernel, {}, { request: `${context.awsRequestId}/${dataset}` });
    } catch (error) {
      // One dataset's bad data or config must not stop the others' refits.
      outcomes[dataset] = { error: error instanceof Error ? error.message : String(error) };
      logger.error('scheduled refit failed', { dataset, error: outcomes[dataset] });
    }
  }
  return outcomes;
};
