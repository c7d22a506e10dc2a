/**
 * The clusterwise pipeline as one reusable construct: one bucket, a tasks queue and an updates FIFO
 * queue (each with a dead-letter queue), four Lambda functions (ingest, planner, worker,
 * aggregator), the refit schedule and the alarms (docs/deploy.md). Nothing has a fixed physical
 * name, so any number of instances fit in one app, account and region.
 *
 *   S3 datasets/…/*.csv ──► ingest ─┐
 *   schedule (EventBridge) ► planner ┴─► tasks ──► worker ──► updates.fifo ──► aggregator ─┐
 *                                          ▲                                               │
 *                                          └───────────────── next tasks ◄─────────────────┘
 *
 * It bundles functions/*.ts of this repository (esbuild, locally), so an app uses it from a checkout
 * (docs/deploy.md §1, "The construct in your own CDK app"):
 *
 *   import { Clusterwise } from './clusterwise/infra/clusterwise.js';
 *   const pipeline = new Clusterwise(this, 'Fits', { workerMemoryMiB: 4096 });
 *   new CfnOutput(this, 'FitsBucket', { value: pipeline.bucket.bucketName });
 */
import { fileURLToPath } from 'node:url';
import { CfnResource, Duration, Names, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import { Rule, RuleTargetInput, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays, type ILogGroup } from 'aws-cdk-lib/aws-logs';
import { EventType, type Bucket } from 'aws-cdk-lib/aws-s3';
import { LambdaDestination } from 'aws-cdk-lib/aws-s3-notifications';
import { Topic, type ITopic } from 'aws-cdk-lib/aws-sns';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ClusterwiseError } from '../lib/errors.js';
import { DataBucket, KeyPrefix } from './constructs/data-bucket.js';
import { PipelineAlarms } from './constructs/pipeline-alarms.js';
import { grantRoleAccess, ROLE_ACCESS } from './constructs/role-access.js';
import { RoleFunction, type PipelineRole } from './constructs/role-function.js';
import { WorkQueue } from './constructs/work-queue.js';
import { AGGREGATOR_MEMORY_MIB, DEFAULT_WORKER_MEMORY_MIB, PLANNER_MEMORY_MIB } from './memory.js';

/** Environment variables every handler receives (all four get the same set). */
export const HANDLER_ENVIRONMENT = [
  'BUCKET_NAME',
  'TASKS_QUEUE_URL',
  'UPDATES_QUEUE_URL',
  'TASKS_DLQ_URL',
  'UPDATES_DLQ_URL',
  'INGEST_FAILURES_URL',
  'WORKER_CONCURRENCY',
  'WORKER_SCALING',
  'POWERTOOLS_SERVICE_NAME',
  'LOG_LEVEL',
] as const;
export type HandlerEnvironmentVariable = (typeof HANDLER_ENVIRONMENT)[number];

/** The tasks-queue event source's scaling mode (ClusterwiseProps.workerScaling). */
export type WorkerScaling = 'standard' | 'provisioned';
export const WORKER_SCALINGS: readonly WorkerScaling[] = ['standard', 'provisioned'];

/** Invocations one provisioned SQS event poller sends at once (AWS Lambda developer guide, SQS scaling). */
export const INVOCATIONS_PER_POLLER = 10;

/** Event pollers that keep `concurrency` invocations ready: within SQS's range for MinimumPollers, 2 to 200. */
export function pollersFor(concurrency: number): number {
  return Math.min(200, Math.max(2, Math.ceil(concurrency / INVOCATIONS_PER_POLLER)));
}

export interface ClusterwiseProps {
  /**
   * Memory of the worker function in MiB (128–10240); CPU share grows with it.
   * @default 2048
   */
  readonly workerMemoryMiB?: number;
  /**
   * Most worker invocations at once: the maximum concurrency of the tasks-queue event source
   * (2–1000). It is not reserved concurrency, which would fail to deploy in accounts with a low
   * concurrency quota; handlers also read it (WORKER_CONCURRENCY) to size the tasks in flight.
   * @default 20
   */
  readonly workerConcurrency?: number;
  /**
   * How the tasks-queue event source reaches `workerConcurrency` (docs/deploy.md §1, §6).
   * "standard": Lambda's default for SQS, 5 invocations at once when messages arrive, then up to
   * 300 more a minute, so a run on hundreds of workers spends its first minute ramping (no charge
   * while idle). "provisioned": provisioned mode, ⌈workerConcurrency / 10⌉ event pollers kept
   * ready (each polls for up to 10 invocations at once), so the whole concurrency is there at once
   * and the planner wakes the workers it will use; the pollers are billed by the hour whether
   * or not a run goes (event poller units, on the Lambda pricing page).
   * @default "standard"
   */
  readonly workerScaling?: WorkerScaling;
  /**
   * Worker timeout, whole seconds, 1 s – 15 min. The tasks queue's visibility timeout is 6× this.
   * @default Duration.minutes(2)
   */
  readonly workerTimeout?: Duration;
  /**
   * Aggregator timeout, whole seconds, 1 s – 15 min. The updates queue's visibility timeout is 6× this.
   * @default Duration.minutes(1)
   */
  readonly aggregatorTimeout?: Duration;
  /**
   * When the planner refits the scheduled datasets.
   * @default Schedule.rate(Duration.days(1))
   */
  readonly refitSchedule?: Schedule;
  /**
   * Dataset names the schedule refits; empty means every dataset that has a model.
   * @default []
   */
  readonly scheduledDatasets?: readonly string[];
  /**
   * How long run intermediates (tagged `clusterwise:intermediate=true` under `runs/`) are kept.
   * Whole days, at least 1.
   * @default Duration.days(7)
   */
  readonly intermediatesRetention?: Duration;
  /**
   * SNS topic that alarms notify. Give this or `alarmTopicArn`, not both.
   * @default no alarm actions
   */
  readonly alarmTopic?: ITopic;
  /**
   * ARN of an existing SNS topic that alarms notify (for apps that cannot build an ITopic first,
   * e.g. from CDK context). Give this or `alarmTopic`, not both.
   * @default no alarm actions
   */
  readonly alarmTopicArn?: string;
  /**
   * Removal policy of the bucket and the log groups: RETAIN or DESTROY (DESTROY also empties the
   * bucket on stack deletion). Queues always go with the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Stack traces in the functions' logs in TypeScript terms: each bundle ships its source map and
   * Node starts with `--enable-source-maps`. Parsing the map costs every cold start about 0.2 s
   * (docs/deploy.md §1), and the planner's and the workers' cold starts come one after the other
   * at the start of every run, so it is off unless asked for.
   * @default false
   */
  readonly sourceMaps?: boolean;
}

/** A prop that cannot work, found at synth time. */
export class InvalidClusterwisePropsError extends ClusterwiseError {
  constructor(readonly problems: string[]) {
    super(`invalid Clusterwise props:\n  - ${problems.join('\n  - ')}`);
    this.name = 'InvalidClusterwisePropsError';
  }
}

type ResolvedProps = Required<
  Pick<
    ClusterwiseProps,
    | 'workerMemoryMiB'
    | 'workerConcurrency'
    | 'workerScaling'
    | 'workerTimeout'
    | 'aggregatorTimeout'
    | 'refitSchedule'
    | 'scheduledDatasets'
    | 'intermediatesRetention'
    | 'removalPolicy'
    | 'sourceMaps'
  >
> &
  Pick<ClusterwiseProps, 'alarmTopic' | 'alarmTopicArn'>;

/** Largest target input EventBridge accepts (characters). */
const MAX_RULE_INPUT = 8192;

/** Applies every default and checks every prop; throws InvalidClusterwisePropsError listing all problems. */
export function resolveClusterwiseProps(props: ClusterwiseProps = {}): ResolvedProps {
  const resolved: ResolvedProps = {
    workerMemoryMiB: props.workerMemoryMiB ?? DEFAULT_WORKER_MEMORY_MIB,
    workerConcurrency: props.workerConcurrency ?? 20,
    workerScaling: props.workerScaling ?? 'standard',
    workerTimeout: props.workerTimeout ?? Duration.minutes(2),
    aggregatorTimeout: props.aggregatorTimeout ?? Duration.minutes(1),
    refitSchedule: props.refitSchedule ?? Schedule.rate(Duration.days(1)),
    scheduledDatasets: props.scheduledDatasets ?? [],
    intermediatesRetention: props.intermediatesRetention ?? Duration.days(7),
    removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    sourceMaps: props.sourceMaps ?? false,
    alarmTopic: props.alarmTopic,
    alarmTopicArn: props.alarmTopicArn,
  };
  const problems: string[] = [];
  const integerIn = (name: string, value: number, min: number, max: number): void => {
    if (Token.isUnresolved(value)) return;
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got ${value}`);
    }
  };
  integerIn('workerMemoryMiB', resolved.workerMemoryMiB, 128, 10240);
  integerIn('workerConcurrency', resolved.workerConcurrency, 2, 1000);
  if (!WORKER_SCALINGS.includes(resolved.workerScaling)) {
    problems.push(`workerScaling must be ${WORKER_SCALINGS.map((m) => `"${m}"`).join(' or ')}, got ${JSON.stringify(resolved.workerScaling)}`);
  }

  for (const [name, timeout] of [
    ['workerTimeout', resolved.workerTimeout],
    ['aggregatorTimeout', resolved.aggregatorTimeout],
  ] as const) {
    const ms = timeout.toMilliseconds();
    if (ms % 1000 !== 0 || ms < 1000 || ms > 15 * 60 * 1000) {
      problems.push(`${name} must be whole seconds from 1 s to 15 min (the Lambda limit), got ${timeout.toHumanString()}`);
    }
  }

  const retentionMs = resolved.intermediatesRetention.toMilliseconds();
  if (retentionMs % 86_400_000 !== 0 || retentionMs < 86_400_000) {
    problems.push(
      `intermediatesRetention must be whole days, at least 1 (S3 lifecycle expiration), got ${resolved.intermediatesRetention.toHumanString()}`,
    );
  }

  const seen = new Set<string>();
  for (const name of resolved.scheduledDatasets) {
    if (name === '' || name === '.' || name === '..' || name.includes('/')) {
      problems.push(`scheduledDatasets: ${JSON.stringify(name)} is not a dataset name (one key segment of datasets/<name>/)`);
    } else if (seen.has(name)) {
      problems.push(`scheduledDatasets: ${JSON.stringify(name)} is listed twice`);
    }
    seen.add(name);
  }
  const inputLength = JSON.stringify(scheduleInput(resolved.scheduledDatasets)).length;
  if (inputLength > MAX_RULE_INPUT) {
    problems.push(`scheduledDatasets: the schedule's target input would be ${inputLength} characters, EventBridge allows ${MAX_RULE_INPUT}`);
  }

  if (resolved.alarmTopic && resolved.alarmTopicArn !== undefined) {
    problems.push('alarmTopic and alarmTopicArn conflict: give one of them');
  }
  if (resolved.removalPolicy !== RemovalPolicy.RETAIN && resolved.removalPolicy !== RemovalPolicy.DESTROY) {
    problems.push(`removalPolicy must be RETAIN or DESTROY (a bucket cannot be snapshotted), got ${resolved.removalPolicy}`);
  }

  if (problems.length > 0) throw new InvalidClusterwisePropsError(problems);
  return resolved;
}

/** The event the schedule sends the planner. */
function scheduleInput(datasets: readonly string[]): { source: 'schedule'; datasets: string[] } {
  return { source: 'schedule', datasets: [...datasets] };
}

/** Repository root, where functions/, node_modules/ and package-lock.json live. */
const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

const PLANNER_TIMEOUT = Duration.minutes(5);


/** Retention of every log group the construct makes (the roles' and the notification handler's). */
const LOG_RETENTION = RetentionDays.ONE_MONTH;

/**
 * Construct id of the stack-wide function CDK makes for `Custom::S3BucketNotifications`
 * (aws-cdk-lib/aws-s3 NotificationsResourceHandler, not exported). Its log group would be created
 * by Lambda on first use, without retention, so the construct gives it one.
 */
const BUCKET_NOTIFICATIONS_HANDLER_ID = 'BucketNotificationsHandler050a0587b7544547bf325f094a3db834';

export class Clusterwise extends Construct {
  /** datasets/ (your data and model.json), runs/ (intermediates and results), models/ (latest pointers). */
  public readonly bucket: Bucket;
  /** Shard tasks for the worker (standard queue) and its dead-letter queue. */
  public readonly tasks: WorkQueue;
  /** Worker results for the aggregator (FIFO, message group = run id) and its dead-letter queue. */
  public readonly updates: WorkQueue;
  /** Upload events ingest failed on after Lambda's asynchronous retries (its on-failure destination). */
  public readonly ingestFailures: Queue;
  /** The four role functions. */
  public readonly functions: Readonly<Record<PipelineRole, NodejsFunction>>;
  /** Their log groups. */
  public readonly logGroups: Readonly<Record<PipelineRole, ILogGroup>>;
  public readonly refitRule: Rule;
  public readonly alarms: PipelineAlarms;

  constructor(scope: Construct, id: string, props: ClusterwiseProps = {}) {
    super(scope, id);
    const p = resolveClusterwiseProps(props);

    this.bucket = new DataBucket(this, 'Data', {
      intermediatesRetention: p.intermediatesRetention,
      removalPolicy: p.removalPolicy,
    }).bucket;
    this.tasks = new WorkQueue(this, 'Tasks', { consumerTimeout: p.workerTimeout });
    this.updates = new WorkQueue(this, 'Updates', { consumerTimeout: p.aggregatorTimeout, fifo: true });
    this.ingestFailures = new Queue(this, 'IngestFailures', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });

    // POWERTOOLS_SERVICE_NAME (clusterwise-<role>) and LOG_LEVEL are set by RoleFunction.
    const environment: Record<Exclude<HandlerEnvironmentVariable, 'POWERTOOLS_SERVICE_NAME' | 'LOG_LEVEL'>, string> = {
      BUCKET_NAME: this.bucket.bucketName,
      TASKS_QUEUE_URL: this.tasks.queue.queueUrl,
      UPDATES_QUEUE_URL: this.updates.queue.queueUrl,
      TASKS_DLQ_URL: this.tasks.deadLetterQueue.queueUrl,
      UPDATES_DLQ_URL: this.updates.deadLetterQueue.queueUrl,
      // Ingest sends an upload it can never fit there at once, as its on-failure destination would after the retries.
      INGEST_FAILURES_URL: this.ingestFailures.queueUrl,
      WORKER_CONCURRENCY: String(p.workerConcurrency),
      WORKER_SCALING: p.workerScaling,
    };
    const made: Partial<Record<PipelineRole, RoleFunction>> = {};
    const make = (id: string, role: PipelineRole, memorySize: number, timeout: Duration, shipWasm = false): NodejsFunction => {
      made[role] = new RoleFunction(this, id, {
        role,
        projectRoot: PROJECT_ROOT,
        memorySize,
        timeout,
        environment,
        shipWasm,
        logRetention: LOG_RETENTION,
        removalPolicy: p.removalPolicy,
        sourceMaps: p.sourceMaps,
      });
      return made[role].function;
    };
    // ingest may start a run itself (the planner role in process), so it is sized like the planner.
    // ingest and planner initialize a run (k-means++ restarts scored by VB on a sample): they ship
    // the TensorFlow.js wasm kernel too.
    const ingest = make('Ingest', 'ingest', PLANNER_MEMORY_MIB, PLANNER_TIMEOUT, true);
    const planner = make('Planner', 'planner', PLANNER_MEMORY_MIB, PLANNER_TIMEOUT, true);
    const worker = make('Worker', 'worker', p.workerMemoryMiB, p.workerTimeout, true);
    const aggregator = make('Aggregator', 'aggregator', AGGREGATOR_MEMORY_MIB, p.aggregatorTimeout);
    this.functions = { ingest, planner, worker, aggregator };
    this.logGroups = { ingest: made.ingest!.logGroup, planner: made.planner!.logGroup, worker: made.worker!.logGroup, aggregator: made.aggregator!.logGroup };

    // Least privilege: each role gets exactly what its code calls (the table in role-access.ts).
    const queues = {
      tasks: this.tasks.queue,
      updates: this.updates.queue,
      tasksDeadLetter: this.tasks.deadLetterQueue,
      updatesDeadLetter: this.updates.deadLetterQueue,
    };
    for (const [role, fn] of Object.entries(this.functions) as [PipelineRole, NodejsFunction][]) {
      grantRoleAccess(fn, ROLE_ACCESS[role], { bucket: this.bucket, queues });
    }

    // Event sources (each SqsEventSource also grants the consumer sqs:ReceiveMessage etc.).
    worker.addEventSource(
      new SqsEventSource(this.tasks.queue, {
        batchSize: 1,
        reportBatchItemFailures: true,
        // The two are exclusive: provisioned pollers bound the concurrency themselves (10 invocations each).
        ...(p.workerScaling === 'provisioned'
          ? { provisionedPollerConfig: { minimumPollers: pollersFor(p.workerConcurrency), maximumPollers: pollersFor(p.workerConcurrency) } }
          : { maxConcurrency: p.workerConcurrency }),
      }),
    );
    aggregator.addEventSource(
      new SqsEventSource(this.updates.queue, {
        batchSize: 10, // the FIFO maximum
        reportBatchItemFailures: true,
      }),
    );
    // S3 event filters take one prefix and one suffix, no wildcard in the middle: datasets/*/data/
    // cannot be expressed, so ingest receives every datasets/…/*.csv and its handler ignores keys
    // without the /data/ segment. ingest writes only under runs/, so it cannot trigger itself.
    this.bucket.addEventNotification(EventType.OBJECT_CREATED, new LambdaDestination(ingest), {
      prefix: KeyPrefix.datasets,
      suffix: '.csv',
    });
    // S3 invokes ingest asynchronously: an event that still fails after Lambda's two retries is
    // kept in a queue (with an alarm) instead of being dropped, so the upload can be refitted.
    ingest.configureAsyncInvoke({ retryAttempts: 2, onFailure: new SqsDestination(this.ingestFailures) });
    retainNotificationHandlerLogs(Stack.of(this), p.removalPolicy);

    this.refitRule = new Rule(this, 'RefitSchedule', {
      description: 'clusterwise: scheduled refit of the datasets',
      schedule: p.refitSchedule,
      targets: [
        new LambdaFunction(planner, {
          event: RuleTargetInput.fromObject(scheduleInput(p.scheduledDatasets)),
          retryAttempts: 2,
          maxEventAge: Duration.hours(1),
        }),
      ],
    });

    const alarmTopic = p.alarmTopic ?? (p.alarmTopicArn !== undefined ? Topic.fromTopicArn(this, 'AlarmTopic', p.alarmTopicArn) : undefined);
    this.alarms = new PipelineAlarms(this, 'Alarms', {
      deadLetterQueues: { Tasks: this.tasks.deadLetterQueue, Updates: this.updates.deadLetterQueue, IngestFailures: this.ingestFailures },
      functions: { Ingest: ingest, Planner: planner, Worker: worker, Aggregator: aggregator },
      errorLogs: { Worker: this.logGroups.worker, Aggregator: this.logGroups.aggregator, Planner: this.logGroups.planner },
      // Per instance, so that two pipelines in one account do not count each other's errors.
      metricNamespace: `clusterwise/${Names.uniqueResourceName(this, { maxLength: 200 })}`,
      alarmTopic,
    });
  }
}

/**
 * Gives the stack's bucket-notification handler (shared by every bucket of the stack) a log group
 * with retention, once per stack.
 */
function retainNotificationHandlerLogs(stack: Stack, removalPolicy: RemovalPolicy): void {
  const handler = stack.node.tryFindChild(BUCKET_NOTIFICATIONS_HANDLER_ID);
  const resource = handler?.node.defaultChild;
  if (!handler || !(resource instanceof CfnResource) || handler.node.tryFindChild('Logs')) return;
  const logGroup = new LogGroup(handler, 'Logs', { retention: LOG_RETENTION, removalPolicy });
  resource.addPropertyOverride('LoggingConfig', { LogGroup: logGroup.logGroupName });
}
