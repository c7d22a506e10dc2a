/** `clusterwise submit` and `status`: the same roles as the Lambda functions, run from here against a deployed stack. */
import { awsClients, awsPorts, stackQueueUrls, type AwsPorts } from '../adapters/aws/ports.js';
import { loadKernel, type BackendName } from '../lib/kernel/backend.js';
import { progressOf } from '../lib/pipeline/aggregator.js';
import { requestRefit, type ActiveRun } from '../lib/pipeline/ingest.js';
import { keys } from '../lib/pipeline/protocol.js';
import { readJsonIfExists, type Manifest, type RunState } from '../lib/pipeline/run.js';

export interface StackOptions {
  bucket: string;
  stack: string;
  endpoint?: string;
  region?: string;
}

export async function connect(o: StackOptions): Promise<AwsPorts> {
  const { sqs } = awsClients(o);
  const urls = await stackQueueUrls(sqs, o.stack);
  return awsPorts({ bucket: o.bucket, endpoint: o.endpoint, region: o.region, ...urls });
}

/** Start a run of the dataset (planned on this machine), or coalesce into a pending refit. */
export async function submit(o: StackOptions & { dataset: string; backend: BackendName | 'auto'; overrides: Record<string, unknown> }): Promise<string> {
  const ports = await connect(o);
  const outcome = await requestRefit(ports, o.dataset, await loadKernel(o.backend), o.overrides);
  return 'started' in outcome
    ? `started run ${outcome.started} of ${o.dataset}`
    : `a run of ${o.dataset} is going (${outcome.coalesced}); a refit will follow it`;
}

/** What `status` prints: the active (or latest) run's progress, its failure, dead letters. */
export async function status(o: StackOptions & { dataset: string }): Promise<{ text: string; failed: boolean }> {
  const ports = await connect(o);
  const marker = await readJsonIfExists<ActiveRun>(ports.store, keys.activeRun(o.dataset));
  const active = marker?.value.ended ? undefined : marker;
  const latest = await readJsonIfExists<{ runId: string }>(ports.store, keys.latestModel(o.dataset));
  const runs = (await ports.store.list(`runs/${o.dataset}/`)).filter((x) => x.key.endsWith('/state.json')).map((x) => x.key.split('/')[2]);
  const runId = active?.value.runId ?? runs.sort().pop() ?? latest?.value.runId;
  const lines: string[] = [];
  let failed = false;
  if (!runId) lines.push(`${o.dataset}: no run yet`);
  else {
    const manifest = await readJsonIfExists<Manifest>(ports.store, keys.manifest(o.dataset, runId));
    const state = await readJsonIfExists<RunState>(ports.store, keys.state(o.dataset, runId));
    if (!manifest || !state) lines.push(`${o.dataset}: run ${runId} is being planned`);
    else {
      const p = progressOf(manifest.value, state.value);
      failed = p.status === 'failed';
      lines.push(
        `run ${runId}: ${p.status}, ${p.phase}${p.phase === 'svi' || p.phase === 'batch' ? ` ${p.round + 1}` : ''}, ` +
          `${p.shardsDone}/${p.shards} shards, ELBO ${p.elbo === null ? '–' : p.elbo.toFixed(2)}, ${p.rows} rows, ${p.skipped} skipped` +
          (p.converged ? ', converged' : ''),
      );
      if (p.failure) lines.push(`failed: ${p.failure}`);
      if (state.value.resultKey) lines.push(`result: s3://${o.bucket}/${state.value.resultKey}`);
    }
    if (active?.value.pendingRefit) lines.push('a refit is pending');
  }
  for (const { name, queue } of ports.deadLetters) lines.push(`dead letters (${name}): ${await queue.depth()}`);
  return { text: lines.join('\n'), failed };
}
