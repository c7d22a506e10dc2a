/**
 * Names of the stack outputs through which the CLI (cli/aws.ts) finds a deployed pipeline: one
 * place for the stack that writes them and the CLI that reads them. No CDK import, so the CLI can
 * load it without aws-cdk-lib.
 */
export const STACK_OUTPUTS = {
  bucket: 'BucketName',
  tasksQueueUrl: 'TasksQueueUrl',
  updatesQueueUrl: 'UpdatesQueueUrl',
  tasksDeadLetterUrl: 'TasksDeadLetterQueueUrl',
  updatesDeadLetterUrl: 'UpdatesDeadLetterQueueUrl',
  ingestFailuresUrl: 'IngestFailuresQueueUrl',
} as const;

export type StackOutputName = keyof typeof STACK_OUTPUTS;
