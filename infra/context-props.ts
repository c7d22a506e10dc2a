/**
 * Stack props from CDK context (`cdk.json` "context", or `npx cdk synth -c key=value`).
 * Values given with -c arrive as strings; values in cdk.json may be numbers or arrays.
 *
 *   workerMemoryMiB            number             e.g. -c workerMemoryMiB=4096
 *   workerConcurrency          number             e.g. -c workerConcurrency=50
 *   workerScaling              "standard" | "provisioned"   e.g. -c workerScaling=provisioned
 *   workerTimeoutSeconds       number             e.g. -c workerTimeoutSeconds=300
 *   aggregatorTimeoutSeconds   number
 *   refitSchedule              "rate(…)" | "cron(…)"   e.g. -c 'refitSchedule=cron(0 3 * * ? *)'
 *   scheduledDatasets          JSON array or comma-separated names, e.g. -c scheduledDatasets=sales,churn
 *   intermediatesRetentionDays number
 *   alarmTopicArn              ARN of an existing SNS topic
 *   removalPolicy              "retain" | "destroy"
 *   sourceMaps                 true | false       e.g. -c sourceMaps=true
 *
 * Absent keys leave the stack's defaults. Range checks happen in the construct (resolveClusterwiseProps).
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Schedule } from 'aws-cdk-lib/aws-events';
import { ClusterwiseError } from '../lib/errors.js';
import type { ClusterwiseProps } from './clusterwise.js';

/** A context value that cannot be read as the type its key needs. */
export class InvalidContextError extends ClusterwiseError {
  constructor(readonly key: string, message: string) {
    super(`context ${key}: ${message}`);
    this.name = 'InvalidContextError';
  }
}

export type ContextLookup = (key: string) => unknown;

export function propsFromContext(get: ContextLookup): ClusterwiseProps {
  const number = (key: string): number | undefined => {
    const raw = get(key);
    if (raw === undefined) return undefined;
    const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!Number.isFinite(value)) throw new InvalidContextError(key, `expected a number, got ${JSON.stringify(raw)}`);
    return value;
  };
  const string = (key: string): string | undefined => {
    const raw = get(key);
    if (raw === undefined) return undefined;
    if (typeof raw !== 'string') throw new InvalidContextError(key, `expected a string, got ${JSON.stringify(raw)}`);
    return raw.trim();
  };
  const boolean = (key: string): boolean | undefined => {
    const raw = get(key);
    if (raw === undefined || typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === 'false') return raw === 'true';
    throw new InvalidContextError(key, `expected true or false, got ${JSON.stringify(raw)}`);
  };
  const seconds = (key: string): Duration | undefined => {
    const value = number(key);
    return value === undefined ? undefined : Duration.seconds(value);
  };

  const props: { -readonly [K in keyof ClusterwiseProps]: ClusterwiseProps[K] } = {
    workerMemoryMiB: number('workerMemoryMiB'),
    workerConcurrency: number('workerConcurrency'),
    workerTimeout: seconds('workerTimeoutSeconds'),
    aggregatorTimeout: seconds('aggregatorTimeoutSeconds'),
    alarmTopicArn: string('alarmTopicArn'),
    workerScaling: string('workerScaling') as ClusterwiseProps['workerScaling'], // checked by the construct
    sourceMaps: boolean('sourceMaps'),
  };

  const retentionDays = number('intermediatesRetentionDays');
  if (retentionDays !== undefined) props.intermediatesRetention = Duration.days(retentionDays);

  const schedule = string('refitSchedule');
  if (schedule !== undefined) {
    if (!/^(rate|cron)\(.+\)$/.test(schedule)) {
      throw new InvalidContextError('refitSchedule', `expected "rate(…)" or "cron(…)", got ${JSON.stringify(schedule)}`);
    }
    props.refitSchedule = Schedule.expression(schedule);
  }

  const datasets = get('scheduledDatasets');
  if (datasets !== undefined) props.scheduledDatasets = parseNames(datasets);

  const removal = string('removalPolicy');
  if (removal !== undefined) {
    const policies: Record<string, RemovalPolicy> = { retain: RemovalPolicy.RETAIN, destroy: RemovalPolicy.DESTROY };
    const policy = policies[removal.toLowerCase()];
    if (policy === undefined) throw new InvalidContextError('removalPolicy', `expected "retain" or "destroy", got ${JSON.stringify(removal)}`);
    props.removalPolicy = policy;
  }

  // Drop absent keys so that spreading these props never overrides a default with undefined.
  return Object.fromEntries(Object.entries(props).filter(([, v]) => v !== undefined)) as ClusterwiseProps;
}

function parseNames(raw: unknown): string[] {
  let value = raw;
  if (typeof value === 'string' && value.trim().startsWith('[')) {
    try {
      value = JSON.parse(value);
    } catch (cause) {
      throw new InvalidContextError('scheduledDatasets', `not valid JSON: ${(cause as Error).message}`);
    }
  }
  if (typeof value === 'string') {
    return value.split(',').map((name) => name.trim()).filter((name) => name !== '');
  }
  if (Array.isArray(value) && value.every((name) => typeof name === 'string')) return value;
  throw new InvalidContextError('scheduledDatasets', `expected a list of names, got ${JSON.stringify(raw)}`);
}
