/**
 * What each pipeline role may do in the bucket and on the queues: one table, read from the code of
 * its role (functions/<role>.ts and the lib/pipeline modules it runs), so a change of what a role
 * reads or writes is one row here. test/infra/access.test.ts asserts that the synthesized
 * policies allow exactly this.
 *
 * Why each row holds what it does:
 * - ingest and planner run `requestRefit` (lib/pipeline/ingest.ts) and `planRun` (planner.ts): they
 *   read `datasets/<name>/model.json`, list and range-read `datasets/<name>/data/*.csv`, read the
 *   warm-start pointer `models/<name>/latest.json` and the posterior it names (under `runs/`), read
 *   and write the active-run marker and a running run's state, and write the manifest, the state and
 *   posterior version 0 (tagged as an intermediate) under `runs/`; before it initializes, the
 *   prefetch plan (tagged) under `runs/` and prefetch messages to the tasks queue. The planner with an empty schedule
 *   list also lists `datasets/` for the model.json files (`configuredDatasets`).
 * - worker (worker.ts) reads the manifest and posterior versions under `runs/` and its shard under
 *   `datasets/` (and, for a prefetch message, the prefetch plan under `runs/`), writes assignment
 *   parts, offloaded result payloads (tagged), binary shard copies,
 *   partial sums and group sums under `runs/`, and lists a round's partial and group sums
 *   (`runs/<name>/<runId>/rounds/…`) to see whether its group is complete; it starts a pending refit
 *   (a refit message), which is `requestRefit` again: so it has the starters' grants too. A task that
  fails for good it sends to the tasks dead-letter queue itself (lib/pipeline/failures.ts).
 * - aggregator (aggregator.ts) reads the manifest, the state, posterior versions, offloaded payloads
 *   and the workers' sums and shard counts under `runs/` (listing `runs/<name>/<runId>/counts/`); it
 *   writes posterior versions (tagged), the state, the results and the released marker under
 *   `runs/`, and `models/<name>/latest.json`. It never reads data: no `datasets/` grant. An update
  that does not parse it sends to the updates dead-letter queue itself (lib/pipeline/update-delivery.ts).
 *
 * No role deletes an object (intermediates expire by the bucket's lifecycle rule), so no
 * s3:DeleteObject; no role sets retention or legal holds or reads tags. A conditional
 * put (If-Match, If-None-Match) needs only s3:PutObject; HEAD needs s3:GetObject; writing an object
 * with tags needs s3:PutObjectTagging as well. The buckets' SSE-S3 encryption and the queues' SSE-SQS
 * need no KMS grant.
 */
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { KeyPrefix } from './data-bucket.js';
import type { PipelineRole } from './role-function.js';

type Prefix = (typeof KeyPrefix)[keyof typeof KeyPrefix];

/** The queues a role sends to (the consumers' receive grants come with their event sources). */
export type SendTarget = 'tasks' | 'updates' | 'tasksDeadLetter' | 'updatesDeadLetter';

export interface RoleAccess {
  /** s3:GetObject (GET and HEAD) on `<prefix>*`. */
  readonly get: readonly Prefix[];
  /** s3:PutObject on `<prefix>*`. */
  readonly put: readonly Prefix[];
  /** s3:PutObjectTagging on `<prefix>*`: objects written with the intermediate tag. */
  readonly putTagged: readonly Prefix[];
  /** s3:ListBucket, only for keys under these prefixes (condition on s3:prefix). */
  readonly list: readonly Prefix[];
  /** sqs:SendMessage (and SendMessageBatch, the same action). */
  readonly send: readonly SendTarget[];
}

const { datasets, runs, models } = KeyPrefix;

/** Starting a run: what ingest and planner do, and the worker when it starts a pending refit. */
const STARTS_RUNS: RoleAccess = {
  get: [datasets, models, runs],
  put: [runs],
  putTagged: [runs],
  list: [datasets],
  send: ['tasks'],
};

export const ROLE_ACCESS: Readonly<Record<PipelineRole, RoleAccess>> = {
  ingest: STARTS_RUNS,
  planner: STARTS_RUNS,
  worker: { ...STARTS_RUNS, list: [datasets, runs], send: ['tasks', 'updates', 'tasksDeadLetter'] },
  aggregator: { get: [runs, models], put: [runs, models], putTagged: [runs], list: [runs], send: ['tasks', 'updatesDeadLetter'] },
};

/** Adds the statements of `access` to the function's role. */
export function grantRoleAccess(
  fn: IFunction,
  access: RoleAccess,
  resources: { bucket: IBucket; queues: Readonly<Record<SendTarget, IQueue>> },
): void {
  const { bucket, queues } = resources;
  const objects = (prefixes: readonly Prefix[]) => prefixes.map((prefix) => bucket.arnForObjects(`${prefix}*`));
  for (const [action, prefixes] of [
    ['s3:GetObject', access.get],
    ['s3:PutObject', access.put],
    ['s3:PutObjectTagging', access.putTagged],
  ] as const) {
    if (prefixes.length > 0) fn.addToRolePolicy(new PolicyStatement({ actions: [action], resources: objects(prefixes) }));
  }
  if (access.list.length > 0) {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': access.list.map((prefix) => `${prefix}*`) } },
      }),
    );
  }
  if (access.send.length > 0) {
    fn.addToRolePolicy(new PolicyStatement({ actions: ['sqs:SendMessage'], resources: access.send.map((q) => queues[q].queueArn) }));
  }
}
