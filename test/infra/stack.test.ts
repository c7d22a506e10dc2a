/**
 * The CloudFormation the stack makes, asserted through Template + Match (bundling skipped: see
 * synth.test.ts for the one test that bundles for real).
 */
import { readFileSync } from 'node:fs';
import { App, Duration, RemovalPolicy, Stack, type CfnElement } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Schedule } from 'aws-cdk-lib/aws-events';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { beforeAll, describe, expect, it } from 'vitest';
import { HANDLER_ENVIRONMENT } from '../../infra/clusterwise.js';
import { ClusterwiseStack, type ClusterwiseStackProps } from '../../infra/clusterwise-stack.js';
import { propsFromContext } from '../../infra/context-props.js';
import type { PipelineRole } from '../../infra/constructs/role-function.js';

/** The feature flags of cdk.json, so tests see what `cdk synth` sees. */
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

function synth(props: ClusterwiseStackProps = {}): { stack: ClusterwiseStack; template: Template } {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new ClusterwiseStack(app, 'Test', props);
  return { stack, template: Template.fromStack(stack) };
}

/** Logical id of a construct's CloudFormation resource, so tests need no hard-coded ids. */
function idOf(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as CfnElement);
}

type Resource = { Type: string; Properties: Record<string, any> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

const ROLES: PipelineRole[] = ['ingest', 'planner', 'worker', 'aggregator'];

const list = <T>(x: T | T[]): T[] => (Array.isArray(x) ? x : [x]);

describe('ClusterwiseStack (defaults)', () => {
  let stack: ClusterwiseStack;
  let template: Template;
  beforeAll(() => {
    ({ stack, template } = synth());
  });
  const fnId = (role: PipelineRole): string => idOf(stack, stack.clusterwise.functions[role]);

  it('makes an encrypted, private bucket that denies non-TLS requests', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: Match.stringLikeRegexp('AES256|aws:kms') } }],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: idOf(stack, stack.clusterwise.bucket) },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it('expires only tagged intermediates under runs/ and aborts stale multipart uploads', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({
            Status: 'Enabled',
            Prefix: 'runs/',
            TagFilters: [{ Key: 'clusterwise:intermediate', Value: 'true' }],
            ExpirationInDays: 7,
          }),
          Match.objectLike({ Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: Match.anyValue() } }),
        ]),
      },
    });
    // No rule expires anything without the tag: results under runs/<name>/<runId>/result/ survive.
    const bucket = Object.values(template.findResources('AWS::S3::Bucket'))[0] as Resource;
    for (const rule of bucket.Properties.LifecycleConfiguration.Rules) {
      if (rule.ExpirationInDays !== undefined) expect(rule.TagFilters).toBeDefined();
    }
  });

  it('keeps the bucket on stack deletion by default', () => {
    template.hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    template.resourceCountIs('Custom::S3AutoDeleteObjects', 0);
  });

  it('makes a standard tasks queue and a FIFO updates queue, each with its own DLQ after 3 receives', () => {
    const tasksDlq = idOf(stack, stack.clusterwise.tasks.deadLetterQueue);
    const updatesDlq = idOf(stack, stack.clusterwise.updates.deadLetterQueue);
    expect(tasksDlq).not.toEqual(updatesDlq);

    template.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: Match.absent(),
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [tasksDlq, 'Arn'] }, maxReceiveCount: 3 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: true,
      ContentBasedDeduplication: false,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [updatesDlq, 'Arn'] }, maxReceiveCount: 3 },
    });
    // A FIFO queue's dead-letter queue must be FIFO too.
    const updatesDlqResource = template.toJSON().Resources[updatesDlq] as Resource;
    expect(updatesDlqResource.Properties.FifoQueue).toBe(true);
    const tasksDlqResource = template.toJSON().Resources[tasksDlq] as Resource;
    expect(tasksDlqResource.Properties.FifoQueue).toBeUndefined();
  });

  it('encrypts every queue and denies non-TLS access to it', () => {
    const queues = template.findResources('AWS::SQS::Queue');
    expect(Object.keys(queues)).toHaveLength(5); // tasks, updates, their DLQs, ingest failures
    for (const [id, queue] of Object.entries(queues) as [string, Resource][]) {
      expect(queue.Properties.SqsManagedSseEnabled, id).toBe(true);
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    }
  });

  it('gives each queue a visibility timeout of at least 6 × its consumer timeout (read from the template)', () => {
    const resources = template.toJSON().Resources as Record<string, Resource>;
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping')) as Resource[];
    expect(mappings).toHaveLength(2);
    for (const mapping of mappings) {
      const fn = resources[mapping.Properties.FunctionName.Ref as string];
      const queue = resources[mapping.Properties.EventSourceArn['Fn::GetAtt'][0] as string];
      expect(fn.Type).toBe('AWS::Lambda::Function');
      expect(queue.Type).toBe('AWS::SQS::Queue');
      expect(queue.Properties.VisibilityTimeout).toBeGreaterThanOrEqual(6 * fn.Properties.Timeout);
    }
  });

  it('wires the worker to the tasks queue and the aggregator to the updates queue with partial batch failures', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: fnId('worker') },
      EventSourceArn: { 'Fn::GetAtt': [idOf(stack, stack.clusterwise.tasks.queue), 'Arn'] },
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 20 },
    });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: fnId('aggregator') },
      EventSourceArn: { 'Fn::GetAtt': [idOf(stack, stack.clusterwise.updates.queue), 'Arn'] },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('invokes ingest on CSV objects created under datasets/', () => {
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: idOf(stack, stack.clusterwise.bucket) },
      NotificationConfiguration: {
        LambdaFunctionConfigurations: [
          {
            Events: ['s3:ObjectCreated:*'],
            Filter: { Key: { FilterRules: Match.anyValue() } },
            LambdaFunctionArn: { 'Fn::GetAtt': [fnId('ingest'), 'Arn'] },
          },
        ],
      },
    });
    const [notifications] = Object.values(template.findResources('Custom::S3BucketNotifications')) as Resource[];
    const rules = notifications.Properties.NotificationConfiguration.LambdaFunctionConfigurations[0].Filter.Key.FilterRules as {
      Name: string;
      Value: string;
    }[];
    expect([...rules].sort((a, b) => a.Name.localeCompare(b.Name))).toEqual([
      { Name: 'prefix', Value: 'datasets/' },
      { Name: 'suffix', Value: '.csv' },
    ]);
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [fnId('ingest'), 'Arn'] },
      Principal: 's3.amazonaws.com',
    });
  });

  it('runs the planner daily with a schedule event for every dataset', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 day)',
      State: 'ENABLED',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [fnId('planner'), 'Arn'] },
          Input: Match.serializedJson({ source: 'schedule', datasets: [] }),
        }),
      ],
    });
  });

  it('runs all four roles as ESM bundles on nodejs22.x or newer, arm64, with the handler environment', () => {
    for (const role of ROLES) {
      const fn = template.toJSON().Resources[fnId(role)] as Resource;
      const version = Number(/^nodejs(\d+)\.x$/.exec(fn.Properties.Runtime)?.[1]);
      expect(version, `${role} runtime ${fn.Properties.Runtime}`).toBeGreaterThanOrEqual(22);
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Properties.Handler).toBe('index.handler');
      expect(Object.keys(fn.Properties.Environment.Variables)).toEqual(expect.arrayContaining([...HANDLER_ENVIRONMENT]));
      expect(fn.Properties.Environment.Variables.POWERTOOLS_SERVICE_NAME).toBe(`clusterwise-${role}`);
      expect(fn.Properties.Environment.Variables.BUCKET_NAME).toEqual({ Ref: idOf(stack, stack.clusterwise.bucket) });
      expect(fn.Properties.Environment.Variables.UPDATES_QUEUE_URL).toEqual({ Ref: idOf(stack, stack.clusterwise.updates.queue) });
      expect(fn.Properties.LoggingConfig.LogGroup).toBeDefined();
      // Source maps are opt-in (sourceMaps): parsing them costs every cold start.
      expect(fn.Properties.Environment.Variables.NODE_OPTIONS).toBeUndefined();
    }
    template.hasResourceProperties('AWS::Lambda::Function', { FunctionName: Match.absent(), MemorySize: 2048, Timeout: 120 });
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  it('grants no "*" action on "*" resource', () => {
    const statements: Statement[] = [];
    for (const policy of Object.values(template.findResources('AWS::IAM::Policy')) as Resource[]) {
      statements.push(...policy.Properties.PolicyDocument.Statement);
    }
    for (const role of Object.values(template.findResources('AWS::IAM::Role')) as Resource[]) {
      for (const inline of role.Properties.Policies ?? []) statements.push(...inline.PolicyDocument.Statement);
    }
    expect(statements.length).toBeGreaterThan(0);
    for (const statement of statements) {
      if (statement.Effect !== 'Allow') continue;
      const wildcardAction = list(statement.Action).some((a) => a === '*' || a === 's3:*' || a === 'sqs:*');
      const wildcardResource = list(statement.Resource).some((r) => r === '*');
      expect(wildcardAction && wildcardResource, JSON.stringify(statement)).toBe(false);
      expect(list(statement.Action)).not.toContain('*');
    }
  });

  it('alarms on any message in a dead-letter queue (tasks, updates, failed ingest events) and on any function error', () => {
    for (const dlq of [stack.clusterwise.tasks.deadLetterQueue, stack.clusterwise.updates.deadLetterQueue, stack.clusterwise.ingestFailures]) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [idOf(stack, dlq), 'QueueName'] } }],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
        AlarmActions: Match.absent(),
      });
    }
    for (const role of ROLES) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId(role) } }],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
      });
    }
  });

  it('alarms on ERROR log lines of the functions whose failures are reported, not thrown', () => {
    for (const name of ['Worker', 'Aggregator', 'Planner']) {
      template.hasResourceProperties('AWS::Logs::MetricFilter', {
        FilterPattern: '{ $.level = "ERROR" }',
        MetricTransformations: [
          Match.objectLike({ MetricNamespace: Match.stringLikeRegexp('^clusterwise/'), MetricName: `${name}ErrorLogs`, MetricValue: '1' }),
        ],
      });
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: Match.stringLikeRegexp('^clusterwise/'),
        MetricName: `${name}ErrorLogs`,
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
      });
    }
  });

  it('outputs the bucket name and the queue URLs', () => {
    template.hasOutput('BucketName', { Value: { Ref: idOf(stack, stack.clusterwise.bucket) } });
    template.hasOutput('TasksQueueUrl', { Value: { Ref: idOf(stack, stack.clusterwise.tasks.queue) } });
    template.hasOutput('UpdatesQueueUrl', { Value: { Ref: idOf(stack, stack.clusterwise.updates.queue) } });
    template.hasOutput('TasksDeadLetterQueueUrl', { Value: { Ref: idOf(stack, stack.clusterwise.tasks.deadLetterQueue) } });
    template.hasOutput('UpdatesDeadLetterQueueUrl', { Value: { Ref: idOf(stack, stack.clusterwise.updates.deadLetterQueue) } });
    template.hasOutput('IngestFailuresQueueUrl', { Value: { Ref: idOf(stack, stack.clusterwise.ingestFailures) } });
  });
});

describe('ClusterwiseStack (props)', () => {
  it('applies worker, schedule and retention props', () => {
    const { stack, template } = synth({
      workerMemoryMiB: 4096,
      workerConcurrency: 50,
      workerTimeout: Duration.minutes(10),
      aggregatorTimeout: Duration.seconds(90),
      refitSchedule: Schedule.cron({ minute: '0', hour: '3' }),
      scheduledDatasets: ['sales', 'churn'],
      intermediatesRetention: Duration.days(3),
    });
    const workerId = stack.getLogicalId(stack.clusterwise.functions.worker.node.defaultChild as CfnElement);
    template.hasResourceProperties('AWS::Lambda::Function', { MemorySize: 4096, Timeout: 600 });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: workerId },
      ScalingConfig: { MaximumConcurrency: 50 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 3600, RedrivePolicy: Match.anyValue() });
    template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 540, FifoQueue: true });
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      Targets: [Match.objectLike({ Input: Match.serializedJson({ source: 'schedule', datasets: ['sales', 'churn'] }) })],
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ Prefix: 'runs/', ExpirationInDays: 3 })]) },
    });
    const fn = template.toJSON().Resources[workerId] as Resource;
    expect(fn.Properties.Environment.Variables.WORKER_CONCURRENCY).toBe('50');
    expect(fn.Properties.Environment.Variables.WORKER_SCALING).toBe('standard');
  });

  it('keeps ⌈concurrency / 10⌉ provisioned pollers ready with workerScaling "provisioned", and tells the handlers', () => {
    const { stack, template } = synth({ workerConcurrency: 200, workerScaling: 'provisioned' });
    const workerId = stack.getLogicalId(stack.clusterwise.functions.worker.node.defaultChild as CfnElement);
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping', { Properties: { FunctionName: { Ref: workerId } } })) as Resource[];
    expect(mappings).toHaveLength(1);
    expect(mappings[0].Properties.ProvisionedPollerConfig).toEqual({ MinimumPollers: 20, MaximumPollers: 20 });
    // Provisioned pollers and a maximum concurrency are exclusive on an SQS event source.
    expect(mappings[0].Properties.ScalingConfig).toBeUndefined();
    const fn = template.toJSON().Resources[workerId] as Resource;
    expect(fn.Properties.Environment.Variables.WORKER_SCALING).toBe('provisioned');
    // SQS's floor of 2 pollers for small concurrencies.
    const small = synth({ workerConcurrency: 5, workerScaling: 'provisioned' }).template;
    small.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ProvisionedPollerConfig: { MinimumPollers: 2, MaximumPollers: 2 } });
  });

  it('starts every role with --enable-source-maps when sourceMaps is on', () => {
    const { template } = synth({ sourceMaps: true });
    const functions = Object.values(template.findResources('AWS::Lambda::Function', { Properties: { Environment: { Variables: { POWERTOOLS_SERVICE_NAME: Match.anyValue() } } } })) as Resource[];
    expect(functions).toHaveLength(4);
    for (const fn of functions) expect(fn.Properties.Environment.Variables.NODE_OPTIONS).toBe('--enable-source-maps');
  });

  it('sends every alarm to the alarm topic when one is given', () => {
    const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
    const topics = new Stack(app, 'Topics');
    const topic = new Topic(topics, 'Alarms');
    const stack = new ClusterwiseStack(app, 'Test', { alarmTopic: topic });
    const template = Template.fromStack(stack);
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as Resource[];
    expect(alarms).toHaveLength(10); // 3 dead-letter, 4 function errors, 3 error logs
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toHaveLength(1);

    const byArn = synth({ alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops' }).template;
    byArn.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: ['arn:aws:sns:eu-west-1:123456789012:ops'] });
  });

  it('empties and deletes the bucket with removalPolicy DESTROY', () => {
    const { template } = synth({ removalPolicy: RemovalPolicy.DESTROY });
    template.hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Delete' });
    template.resourceCountIs('Custom::S3AutoDeleteObjects', 1);
    template.allResources('AWS::Logs::LogGroup', { DeletionPolicy: 'Delete' });
  });

  it.each<[string, ClusterwiseStackProps, RegExp]>([
    ['memory below 128 MiB', { workerMemoryMiB: 64 }, /workerMemoryMiB must be an integer from 128 to 10240, got 64/],
    ['memory above 10240 MiB', { workerMemoryMiB: 20_000 }, /workerMemoryMiB/],
    ['fractional memory', { workerMemoryMiB: 1024.5 }, /workerMemoryMiB/],
    ['concurrency below 2', { workerConcurrency: 1 }, /workerConcurrency must be an integer from 2 to 1000, got 1/],
    ['concurrency above 1000', { workerConcurrency: 1001 }, /workerConcurrency/],
    ['worker timeout above 15 min', { workerTimeout: Duration.minutes(16) }, /workerTimeout must be whole seconds from 1 s to 15 min/],
    ['fractional timeout', { aggregatorTimeout: Duration.millis(1500) }, /aggregatorTimeout/],
    ['retention under a day', { intermediatesRetention: Duration.hours(12) }, /intermediatesRetention must be whole days/],
    ['a dataset name with a slash', { scheduledDatasets: ['a/b'] }, /"a\/b" is not a dataset name/],
    ['an empty dataset name', { scheduledDatasets: [''] }, /"" is not a dataset name/],
    ['a dataset listed twice', { scheduledDatasets: ['x', 'x'] }, /"x" is listed twice/],
    ['a schedule input over 8192 characters', { scheduledDatasets: Array.from({ length: 1000 }, (_, i) => `dataset-${i}`) }, /EventBridge allows 8192/],
    ['alarmTopic and alarmTopicArn together', { alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops', alarmTopic: {} as never }, /alarmTopic and alarmTopicArn conflict/],
    ['removalPolicy SNAPSHOT', { removalPolicy: RemovalPolicy.SNAPSHOT }, /removalPolicy must be RETAIN or DESTROY/],
    ['an unknown worker scaling', { workerScaling: 'fast' as never }, /workerScaling must be "standard" or "provisioned", got "fast"/],
  ])('rejects %s at synth time', (_name, props, message) => {
    expect(() => synth(props)).toThrowError(message);
  });

  it('lists every problem in one error', () => {
    expect(() => synth({ workerMemoryMiB: 1, workerConcurrency: 1 })).toThrowError(/workerMemoryMiB[\s\S]*workerConcurrency/);
  });
});

describe('propsFromContext', () => {
  const from = (context: Record<string, unknown>): ClusterwiseStackProps => propsFromContext((key) => context[key]);

  it('reads -c strings and cdk.json values', () => {
    const props = from({
      workerMemoryMiB: '4096',
      workerConcurrency: 50,
      workerTimeoutSeconds: '300',
      aggregatorTimeoutSeconds: 90,
      refitSchedule: 'cron(0 3 * * ? *)',
      scheduledDatasets: 'sales, churn',
      intermediatesRetentionDays: '3',
      alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops',
      removalPolicy: 'destroy',
      workerScaling: 'provisioned',
      sourceMaps: 'true',
    });
    expect(props.workerMemoryMiB).toBe(4096);
    expect(props.workerConcurrency).toBe(50);
    expect(props.workerTimeout?.toSeconds()).toBe(300);
    expect(props.aggregatorTimeout?.toSeconds()).toBe(90);
    expect(props.refitSchedule?.expressionString).toBe('cron(0 3 * * ? *)');
    expect(props.scheduledDatasets).toEqual(['sales', 'churn']);
    expect(props.intermediatesRetention?.toDays()).toBe(3);
    expect(props.alarmTopicArn).toBe('arn:aws:sns:eu-west-1:123456789012:ops');
    expect(props.removalPolicy).toBe(RemovalPolicy.DESTROY);
    expect(props.workerScaling).toBe('provisioned');
    expect(props.sourceMaps).toBe(true);
    expect(from({ sourceMaps: false }).sourceMaps).toBe(false);
    expect(from({ scheduledDatasets: '["a","b"]' }).scheduledDatasets).toEqual(['a', 'b']);
    expect(from({ scheduledDatasets: ['a'] }).scheduledDatasets).toEqual(['a']);
  });

  it('leaves absent keys out, so the stack defaults apply', () => {
    expect(from({})).toEqual({});
  });

  it('names the key of a value it cannot read', () => {
    expect(() => from({ workerMemoryMiB: 'lots' })).toThrowError(/context workerMemoryMiB: expected a number/);
    expect(() => from({ refitSchedule: 'daily' })).toThrowError(/context refitSchedule: expected "rate\(…\)" or "cron\(…\)"/);
    expect(() => from({ removalPolicy: 'snapshot' })).toThrowError(/context removalPolicy/);
    expect(() => from({ scheduledDatasets: '[oops' })).toThrowError(/context scheduledDatasets: not valid JSON/);
    expect(() => from({ sourceMaps: 'yes' })).toThrowError(/context sourceMaps: expected true or false/);
  });
});
