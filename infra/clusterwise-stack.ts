/**
 * The deployable stack (`npx cdk deploy`, infra/app.ts): one Clusterwise construct, plus the
 * outputs through which the CLI finds it (infra/outputs.ts).
 */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Clusterwise, type ClusterwiseProps } from './clusterwise.js';
import { STACK_OUTPUTS, type StackOutputName } from './outputs.js';

export interface ClusterwiseStackProps extends StackProps, ClusterwiseProps {}

export class ClusterwiseStack extends Stack {
  public readonly clusterwise: Clusterwise;

  constructor(scope: Construct, id: string, props: ClusterwiseStackProps = {}) {
    super(scope, id, { description: 'clusterwise: mixtures of regressions fitted by stochastic variational inference', ...props });
    // The id "Default" leaves the construct out of its resources' logical ids, so they are the
    // ones the stack had before the construct existed: updating a deployed stack keeps its bucket.
    this.clusterwise = new Clusterwise(this, 'Default', props);

    const c = this.clusterwise;
    const outputs: Record<StackOutputName, { value: string; description: string }> = {
      bucket: { value: c.bucket.bucketName, description: 'Bucket: datasets/, runs/, models/' },
      tasksQueueUrl: { value: c.tasks.queue.queueUrl, description: 'Shard tasks (worker)' },
      updatesQueueUrl: { value: c.updates.queue.queueUrl, description: 'Worker results (aggregator)' },
      tasksDeadLetterUrl: { value: c.tasks.deadLetterQueue.queueUrl, description: 'Tasks that failed 3 times' },
      updatesDeadLetterUrl: { value: c.updates.deadLetterQueue.queueUrl, description: 'Updates that failed 3 times' },
      ingestFailuresUrl: { value: c.ingestFailures.queueUrl, description: 'Upload events ingest failed on' },
    };
    for (const [name, output] of Object.entries(outputs) as [StackOutputName, { value: string; description: string }][]) {
      new CfnOutput(this, STACK_OUTPUTS[name], output);
    }
  }
}
