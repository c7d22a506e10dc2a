/**
 * Ingest Lambda (S3 ObjectCreated under datasets/): starts a run, or coalesces into a pending refit.
 * An upload that can never be fitted as things stand (a permanent error: no valid model.json, no
 * usable rows; lib/errors.ts) goes to the IngestFailures queue at once, in the shape Lambda's
 * on-failure destination gives it, instead of failing the same way on Lambda's two retries.
 */
import { createHash } from 'node:crypto';
import type { Context, S3Event } from 'aws-lambda';
import { describeError, isRetryable } from '../lib/errors.js';
import { datasetOfDataKey, requestRefit, type RefitOutcome } from '../lib/pipeline/ingest.js';
import { containerKernel, createLogger, roleContext } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);

export const handler = async (event: S3Event, context: Context): Promise<Record<string, RefitOutcome | 'ignored' | { failed: string }>> => {
  logger.addContext(context);
  const outcomes: Record<string, RefitOutcome | 'ignored' | { failed: string }> = {};
  for (const r of event.Records) {
    // S3 event keys are URL-encoded with '+' for spaces.
    const key = decodeURIComponent(r.s3.object.key.replace(/\+/g, ' '));
    const dataset = datasetOfDataKey(key);
    if (!dataset) {
      // The notification filter cannot express datasets/*/data/ (infra/clusterwise-stack.ts).
      logger.info('not a data object; ignored', { key });
      outcomes[key] = 'ignored';
      continue;
    }
    // Lambda retries a failed event as it was: a hash of the record names this upload on every attempt.
    const request = createHash('sha256').update(JSON.stringify([r.s3.bucket.name, r.s3.object.key, r.s3.object.sequencer, r.eventTime])).digest('hex');
    try {
      outcomes[key] = await requestRefit(ctx, dataset, containerKernel(), {}, { request });
    } catch (error) {
      const failures = ctx.deadLetter?.uploads;
      if (isRetryable(error) || !failures) throw error;
      const reason = describeError(error);
      await failures.send(
        JSON.stringify({
          version: '1.0',
          timestamp: new Date().toISOString(),
          requestContext: { requestId: context.awsRequestId, functionArn: context.invokedFunctionArn, condition: 'PermanentError', approximateInvokeCount: 1 },
          requestPayload: { Records: [r] },
          responsePayload: { errorType: error instanceof Error ? error.name : 'Error', errorMessage: error instanceof Error ? error.message : reason },
        }),
      );
      logger.error('upload not fitted; sent to the ingest failures queue', { key, dataset, reason });
      outcomes[key] = { failed: reason };
      continue;
    }
    logger.info('upload handled', { key, dataset, ...outcomes[key] });
  }
  return outcomes;
};
