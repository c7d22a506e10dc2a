/**
 * Alarms that say "something was lost or failed": a message in a dead-letter queue, or a function
 * invocation that threw.
 */
import { Duration } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { FilterPattern, MetricFilter, type ILogGroup } from 'aws-cdk-lib/aws-logs';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface PipelineAlarmsProps {
  /** Dead-letter queues, by a name used in the alarm's construct id and description. */
  readonly deadLetterQueues: Record<string, IQueue>;
  /** Functions, by a name used in the alarm's construct id and description. */
  readonly functions: Record<string, IFunction>;
  /**
   * Log groups of functions whose failures are reported, not thrown (SQS partial batch responses
   * do not count as Errors): an alarm on their ERROR-level structured log lines.
   * @default none
   */
  readonly errorLogs?: Record<string, ILogGroup>;
  /**
   * Where alarms notify.
   * @default no alarm actions
   */
  readonly alarmTopic?: ITopic;
  /**
   * CloudWatch namespace of the error-log metrics; give each pipeline its own so that two in one
   * account do not count each other's log lines.
   * @default "clusterwise"
   */
  readonly metricNamespace?: string;
  /**
   * Metric period.
   * @default Duration.minutes(5)
   */
  readonly period?: Duration;
}

export class PipelineAlarms extends Construct {
  /** Alarm per dead-letter queue: ApproximateNumberOfMessagesVisible > 0. */
  public readonly deadLetterAlarms: Alarm[] = [];
  /** Alarm per function: Errors > 0. */
  public readonly errorAlarms: Alarm[] = [];
  /** Alarm per log group of `errorLogs`: ERROR-level log lines > 0. */
  public readonly errorLogAlarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: PipelineAlarmsProps) {
    super(scope, id);
    const period = props.period ?? Duration.minutes(5);
    const common = {
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    };

    for (const [name, queue] of Object.entries(props.deadLetterQueues)) {
      this.deadLetterAlarms.push(
        new Alarm(this, `${name}DeadLetters`, {
          ...common,
          alarmDescription: `clusterwise: messages in the ${name} dead-letter queue (a task or update failed 3 times)`,
          metric: queue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
        }),
      );
    }
    for (const [name, fn] of Object.entries(props.functions)) {
      this.errorAlarms.push(
        new Alarm(this, `${name}Errors`, {
          ...common,
          alarmDescription: `clusterwise: the ${name} function threw`,
          metric: fn.metricErrors({ period, statistic: 'Sum' }),
        }),
      );
    }

    for (const [name, logGroup] of Object.entries(props.errorLogs ?? {})) {
      // Powertools Logger writes JSON with "level": a failed record is logged at ERROR and
      // reported as a batch item failure, which the Errors metric never sees.
      const filter = new MetricFilter(this, `${name}ErrorLogFilter`, {
        logGroup,
        filterPattern: FilterPattern.stringValue('$.level', '=', 'ERROR'),
        metricNamespace: props.metricNamespace ?? 'clusterwise',
        metricName: `${name}ErrorLogs`,
        metricValue: '1',
        defaultValue: 0,
      });
      this.errorLogAlarms.push(
        new Alarm(this, `${name}ErrorLogs`, {
          ...common,
          alarmDescription: `clusterwise: the ${name} function logged an error (a record failed and will be retried or dead-lettered)`,
          metric: filter.metric({ period, statistic: 'Sum' }),
        }),
      );
    }

    if (props.alarmTopic) {
      const action = new SnsAction(props.alarmTopic);
      for (const alarm of [...this.deadLetterAlarms, ...this.errorAlarms, ...this.errorLogAlarms]) alarm.addAlarmAction(action);
    }
  }
}
