/** Ingest Lambda (S3 ObjectCreated under datasets/): starts a run, or coalesces into a pending refit. */
import { createHash } from 'node:crypto';
import type { Context, S3Event } from 'aws-lambda';
import { datasetOfDataKey, requestRefit, type RefitOutcome } from '../lib/pipeline/ingest.js';
import { containerKernel, createLogger, roleContext } from './runtime.js';

const logger = createLogger();
const ctx = roleContext(logger);

export const handler = async (event: S3Event, context: Context): Promise<Record<string, RefitOutcome | 'ignored'>> => {
  logger.addContext(context);
  const outcomes: Record<string, RefitOutcome | 'ignored'> = {};
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
    outcomes[key] = await requestRefit(ctx, dataset, await containerKernel(), {}, { request });
    logger.info('upload handled', { key, dataset, ...outcomes[key] });
  }
  return outcomes;
};
