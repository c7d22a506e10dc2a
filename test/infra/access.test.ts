/**
 * IAM: each role's policy allows exactly what its code calls (issue 7 item 12), read from the
 * synthesized template and compared with a list written out here from the code, independently of
 * the grant table in infra/constructs/role-access.ts.
 */
import { readFileSync } from 'node:fs';
import { App, type CfnElement, type Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClusterwiseStack } from '../../infra/clusterwise-stack.js';
import type { PipelineRole } from '../../infra/constructs/role-function.js';

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };

type Resource = { Type: string; Properties: Record<string, any> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
const list = <T>(x: T | T[]): T[] => (Array.isArray(x) ? x : [x]);

/**
 * What a role may do, one line per action and resource: `s3:GetObject runs/*`,
 * `s3:ListBucket bucket if datasets/*`, `sqs:SendMessage tasks`.
 */
function grantsOf(stack: ClusterwiseStack, template: Template, role: PipelineRole): string[] {
  const c = stack.clusterwise;
  const id = (construct: { node: { defaultChild?: unknown } }) => stack.getLogicalId(construct.node.defaultChild as CfnElement);
  const queues: Record<string, string> = {
    [id(c.tasks.queue)]: 'tasks',
    [id(c.tasks.deadLetterQueue)]: 'tasks-dlq',
    [id(c.updates.queue)]: 'updates',
    [id(c.updates.deadLetterQueue)]: 'updates-dlq',
    [id(c.ingestFailures)]: 'ingest-failures',
  };
  const bucketArn = JSON.stringify({ 'Fn::GetAtt': [id(c.bucket), 'Arn'] });
  const name = (resource: unknown): string => {
    const text = JSON.stringify(resource);
    if (text === bucketArn) return 'bucket';
    const objects = /^\{"Fn::Join":\["",\[(.*),"\/([^"]*)"\]\]\}$/.exec(text);
    if (objects && objects[1] === bucketArn) return objects[2];
    const getAtt = (resource as { 'Fn::GetAtt'?: string[] })['Fn::GetAtt'];
    if (getAtt && queues[getAtt[0]]) return queues[getAtt[0]];
    return text;
  };
  const roleId = id(c.functions[role].role! as unknown as { node: { defaultChild?: unknown } });
  const policies = Object.values(template.findResources('AWS::IAM::Policy')) as Resource[];
  const statements = policies
    .filter((p) => (p.Properties.Roles as unknown[]).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: roleId })))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
  const grants = statements.flatMap((s) => {
    expect(s.Effect).toBe('Allow');
    const condition = s.Condition ? ` if ${list((s.Condition as any).StringLike['s3:prefix']).join(',')}` : '';
    return list(s.Action).flatMap((action) => list(s.Resource).map((r) => `${action} ${name(r)}${condition}`));
  });
  return [...new Set(grants)].sort();
}

/** Receiving from a queue through a Lambda event source mapping (granted by CDK's SqsEventSource). */
const consumes = (queue: string) =>
  ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'].map((a) => `${a} ${queue}`);

/** Starting a run (lib/pipeline/ingest.ts requestRefit → planner.ts planRun), as listed in role-access.ts. */
const STARTS_RUNS = [
  's3:GetObject datasets/*', // model.json, the CSVs (HEAD, header, sample, shards)
  's3:GetObject models/*', // latest.json, the warm-start pointer
  's3:GetObject runs/*', // active.json, a running run's state, the posterior latest.json names
  's3:PutObject runs/*', // active.json, manifest, posterior v0, state
  's3:PutObjectTagging runs/*', // posterior v0 and offloaded payloads carry the intermediate tag
  's3:ListBucket bucket if datasets/*', // the data files, the datasets with a model.json
  'sqs:SendMessage tasks', // the first tasks
];

const EXPECTED: Record<PipelineRole, string[]> = {
  // Lambda's on-failure destination sends the failed event with the function's role.
  ingest: [...STARTS_RUNS, 'sqs:GetQueueAttributes ingest-failures', 'sqs:GetQueueUrl ingest-failures', 'sqs:SendMessage ingest-failures'],
  planner: STARTS_RUNS,
  // Runs tasks (manifest, posterior versions, shards, partial sums and shard intermediates under
  // runs/, assignment parts), lists a round's sums (worker.ts), sends results, and starts a pending
  // refit like the planner.
  worker: [
    ...STARTS_RUNS.filter((grant) => !grant.startsWith('s3:ListBucket')),
    's3:ListBucket bucket if datasets/*,runs/*',
    'sqs:SendMessage updates',
    'sqs:SendMessage tasks-dlq', // a task that fails for good, at once (lib/pipeline/failures.ts)
    ...consumes('tasks'),
  ],
  aggregator: [
    's3:GetObject models/*',
    's3:GetObject runs/*',
    's3:PutObject models/*',
    's3:PutObject runs/*',
    's3:PutObjectTagging runs/*',
    's3:ListBucket bucket if runs/*', // the run's shard counts (aggregator.ts)
    'sqs:SendMessage tasks',
    'sqs:SendMessage updates-dlq', // an update that does not parse, at once (lib/pipeline/update-delivery.ts)
    ...consumes('updates'),
  ],
};

describe('IAM of the four roles', () => {
  let stack: ClusterwiseStack;
  let template: Template;
  beforeAll(() => {
    const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
    stack = new ClusterwiseStack(app, 'Test');
    template = Template.fromStack(stack);
  });

  it.each(Object.keys(EXPECTED) as PipelineRole[])('%s is allowed exactly what its code calls', (role) => {
    expect(grantsOf(stack, template, role)).toEqual([...EXPECTED[role]].sort());
  });

  it('lets no role delete, set retention or legal holds, or use a wildcard action', () => {
    const actions = (Object.values(template.findResources('AWS::IAM::Policy')) as Resource[])
      .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[])
      .flatMap((s) => list(s.Action));
    for (const forbidden of [/^s3:Delete/, /Retention/, /LegalHold/, /\*$/]) {
      expect(actions.filter((a) => forbidden.test(a))).toEqual([]);
    }
  });

  it('gives each role only the basic Lambda logging policy besides its own', () => {
    const c = stack.clusterwise;
    for (const fn of Object.values(c.functions)) {
      const role = template.toJSON().Resources[(stack as Stack).getLogicalId(fn.role!.node.defaultChild as CfnElement)] as Resource;
      expect(JSON.stringify(role.Properties.ManagedPolicyArns)).toMatch(/AWSLambdaBasicExecutionRole/);
      expect(role.Properties.ManagedPolicyArns).toHaveLength(1);
      expect(role.Properties.Policies).toBeUndefined();
    }
  });
});
