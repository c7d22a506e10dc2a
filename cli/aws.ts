/**
 * `clusterwise submit` and `status`: the same roles as the Lambda functions, run from here against a
 * deployed stack, found through its CloudFormation outputs (infra/outputs.ts).
 */
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { awsPorts, StackLookupError, type AwsPorts } from '../adapters/aws/ports.js';
import { SqsQueue } from '../adapters/aws/sqs-queue.js';
import { STACK_OUTPUTS, type StackOutputName } from '../infra/outputs.js';
import { loadKernel, type BackendName } from '../lib/kernel/backend.js';
import { progressOf } from '../lib/pipeline/aggregator.js';
import { requestRefit, type ActiveRun } from '../lib/pipeline/ingest.js';
import { keys } from '../lib/pipeline/protocol.js';
import { readJsonIfExists, type Manifest, type RunState } from '../lib/pipeline/run.js';

export interface StackOptions {
  /** The stack's CloudFormation name. */
  stack: string;
  /** The bucket, when given: must be the stack's (a guard against the wrong stack). @default the stack's output */
  bucket?: string;
  /** An endpoint for every AWS client (an emulator). */
  endpoint?: string;
  region?: string;
}

export { StackLookupError };

/** The deployed pipeline's bucket and queue URLs, read from its stack's outputs. */
export async function stackOutputs(o: StackOptions): Promise<Partial<Record<StackOutputName, string>>> {
  const client = new CloudFormationClient({
    ...(o.region ? { region: o.region } : {}),
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
  });
  let outputs;
  try {
    const { Stacks } = await client.send(new DescribeStacksCommand({ StackName: o.stack }));
    outputs = Stacks?.[0]?.Outputs ?? [];
  } catch (cause) {
    // Keep AWS's own words: a missing stack, a missing region and bad credentials read differently.
    const region = await client.config.region().catch(() => undefined);
    // Without a region the SDK says only "Region is missing": say where a region comes from.
    const hint = region ? '' : ' (give --region, or set AWS_REGION or a profile\'s region)';
    throw new StackLookupError(
      `cannot read the outputs of stack "${o.stack}"${region ? ` in ${region}` : ''}: ${(cause as Error).message}${hint}`,
      { cause },
    );
  } finally {
    client.destroy();
  }
  const byKey = new Map(outputs.map((output) => [output.OutputKey, output.OutputValue]));
  return Object.fromEntries(
    (Object.entries(STACK_OUTPUTS) as [StackOutputName, string][]).flatMap(([name, key]) => (byKey.has(key) ? [[name, byKey.get(key)!]] : [])),
  );
}

export interface StackConnection extends AwsPorts {
  bucket: string;
  /** Upload events ingest gave up on (absent for stacks deployed before it existed). */
  ingestFailures?: SqsQueue;
}

export async function connect(o: StackOptions): Promise<StackConnection> {
  const outputs = await stackOutputs(o);
  const need = (name: 'bucket' | 'tasksQueueUrl' | 'updatesQueueUrl'): string => {
    const value = outputs[name];
    if (!value) throw new StackLookupError(`stack "${o.stack}" has no output ${STACK_OUTPUTS[name]}: is it a clusterwise stack?`);
    return value;
  };
  const bucket = need('bucket');
  if (o.bucket !== undefined && o.bucket !== bucket) {
    throw new StackLookupError(`--bucket ${o.bucket} is not the bucket of stack "${o.stack}" (${bucket})`);
  }
  const ports = awsPorts({
    bucket,
    endpoint: o.endpoint,
    region: o.region,
    tasksQueueUrl: need('tasksQueueUrl'),
    updatesQueueUrl: need('updatesQueueUrl'),
    tasksDeadLetterUrl: outputs.tasksDeadLetterUrl,
    updatesDeadLetterUrl: outputs.updatesDeadLetterUrl,
  });
  const ingestFailures = outputs.ingestFailuresUrl
    ? new SqsQueue({ client: ports.sqs, queueUrl: outputs.ingestFailuresUrl, name: 'ingest-failures' })
    : undefined;
  return { ...ports, bucket, ingestFailures };
}

/** Start a run of the dataset (planned on this machine), or coalesce into a pending refit. */
export async function submit(o: StackOptions & { dataset: string; backend: BackendName | 'auto'; overrides: Record<string, unknown>; request: string }): Promise<string> {
  const ports = await connect(o);
  const outcome = await requestRefit(ports, o.dataset, await loadKernel(o.backend), o.overrides, { request: `submit/${o.request}` });
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
      if (state.value.resultKey) lines.push(`result: s3://${ports.bucket}/${state.value.resultKey}`);
    }
    if (active?.value.pendingRefit) lines.push('a refit is pending');
  }
  for (const { name, queue } of ports.deadLetters) lines.push(`dead letters (${name}): ${await queue.depth()}`);
  if (ports.ingestFailures) lines.push(`upload events ingest failed on: ${await ports.ingestFailures.depth()}`);
  return { text: lines.join('\n'), failed };
}
