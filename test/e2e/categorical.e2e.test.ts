/**
 * End-to-end: categorical covariates through the serverless pipeline on the emulator (docs/model.md
 * §16). The real Lambda handlers run against S3 and SQS served by fauxqs, as in
 * pipeline.e2e.test.ts; the dataset's model.json lists a categorical column, and the run's
 * manifest, shards (binary copies), workers, aggregator and posterior.json carry the levels.
 */
import { describe, expect, it } from 'vitest';
import { adjustedRandIndex } from '../../bench/metrics.js';
import type { PosteriorDocument } from '../../lib/model/summary.js';
import { keys } from '../../lib/pipeline/protocol.js';
import type { Manifest, RunState } from '../../lib/pipeline/run.js';
import { categoricalMixture, MIXTURE_CONFIG } from '../support/categorical.js';
import { pollUntil } from '../support/lambda-poller.js';
import { eventSources, readObject, runEnded, splitCsv, startRun, useEmulatedStack } from './stack.js';

const DATASET = 'mixed';
const MODEL = { ...MIXTURE_CONFIG, assignments: true, seed: 3, schedule: { shardRows: 400, sviEpochs: 1 } };

/** The emulated stack, started before this file's tests and stopped after (stack.ts). */
const env = useEmulatedStack();

describe('categorical covariates through the serverless pipeline', () => {
  it('model.json\'s categorical columns reach every role; the known mixture is recovered (ARI at least 0.95)', async () => {
    const { labels, csv } = categoricalMixture(3000, 11);
    const [header, ...rows] = csv.trim().split('\n');
    const runId = await startRun(env.stack, env.handlers, DATASET, MODEL, splitCsv(header, rows, 5));
    const manifest = await readObject<Manifest>(env.stack, keys.manifest(DATASET, runId));
    expect(manifest.plan.xc).toEqual(['c1', 'c2', 'c3']);
    expect(manifest.shards.length).toBeGreaterThanOrEqual(5);

    const { workers, aggregator } = eventSources(env.stack, env.handlers);
    await pollUntil([workers, aggregator], runEnded(env.stack, DATASET, runId), { timeoutMs: 90_000, description: `run ${runId} ended` });
    const state = await readObject<RunState>(env.stack, keys.state(DATASET, runId));
    expect(state.failure).toBeUndefined();
    expect(state.status).toBe('done');
    expect(workers.handlerErrors).toEqual([]);
    expect(aggregator.handlerErrors).toEqual([]);

    const posterior = await readObject<PosteriorDocument>(env.stack, keys.result(DATASET, runId, 'posterior.json'));
    expect(posterior.rows).toBe(3000);
    expect(posterior.components).toHaveLength(3);
    expect(posterior.regressionColumns).toEqual(['x1', 'c1=b', 'c1=c', 'c1=d']);
    expect(posterior.state.plan.select.find((s) => s.column === 'c3')?.levels).toEqual(['1', '2', '3', '4']);
    for (const c of posterior.components) for (const column of ['c1', 'c2', 'c3']) expect(Math.max(...Object.values(c.categories![column]))).toBeGreaterThan(0.7);

    // The assignments the run wrote: row (0-based among the kept rows, in the data objects' order), cluster.
    const parts = (await env.stack.store.list(keys.result(DATASET, runId, 'assignments/'))).map((o) => o.key).sort();
    expect(parts.length).toBe(manifest.shards.length);
    const predicted = new Array<number>(labels.length).fill(-1);
    for (const key of parts) {
      const [, ...lines] = new TextDecoder().decode((await env.stack.store.get(key)).body).trim().split('\n');
      for (const line of lines) {
        const [row, cluster] = line.split(',').map(Number);
        predicted[row] = cluster;
      }
    }
    expect(predicted.filter((c) => c < 0)).toEqual([]);
    const ari = adjustedRandIndex(labels, predicted);
    expect(ari, `ARI ${ari}`).toBeGreaterThanOrEqual(0.95);
  });
});
