/**
 * The CLI finds a deployed stack through its CloudFormation outputs (cli/aws.ts), here the
 * emulated stack's (test/e2e/stack.ts): no bucket or queue name is derived from the stack name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status, stackOutputs } from '../../cli/aws.js';
import { setStackEnvironment, STACK, startStack, type EmulatedStack } from './stack.js';

describe('the CLI reads the stack outputs', () => {
  let stack: EmulatedStack;
  beforeAll(async () => {
    stack = await startStack({ tasksVisibilitySeconds: 30, updatesVisibilitySeconds: 30 });
    setStackEnvironment(stack); // region and credentials, as a user's environment has them
  });
  afterAll(() => stack?.stop());

  it('finds the bucket and every queue URL', async () => {
    const outputs = await stackOutputs({ stack: STACK, endpoint: stack.emulator.endpoint });
    expect(outputs).toEqual({
      bucket: stack.bucket,
      tasksQueueUrl: stack.queues.tasks.url,
      updatesQueueUrl: stack.queues.updates.url,
      tasksDeadLetterUrl: stack.queues.tasksDeadLetter.url,
      updatesDeadLetterUrl: stack.queues.updatesDeadLetter.url,
      ingestFailuresUrl: stack.queues.ingestFailures.url,
    });
  });

  it('`status` works without --bucket and reports every dead-letter queue', async () => {
    const result = await status({ stack: STACK, endpoint: stack.emulator.endpoint, dataset: 'sales' });
    expect(result.text.split('\n')).toEqual([
      'sales: no run yet',
      'dead letters (tasks): 0',
      'dead letters (updates): 0',
      'upload events ingest failed on: 0',
    ]);
  });

  it('names the stack and keeps CloudFormation\'s own message when the stack does not exist', async () => {
    await expect(status({ stack: 'Elsewhere', endpoint: stack.emulator.endpoint, dataset: 'sales' })).rejects.toThrow(
      /cannot read the outputs of stack "Elsewhere" in us-east-1: Stack with id Elsewhere does not exist/,
    );
  });

  it('says where a region comes from when there is none', async () => {
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION, AWS_CONFIG_FILE: process.env.AWS_CONFIG_FILE };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    process.env.AWS_CONFIG_FILE = '/nonexistent/aws-config'; // no profile region either
    try {
      await expect(stackOutputs({ stack: STACK, endpoint: stack.emulator.endpoint })).rejects.toThrow(
        `cannot read the outputs of stack "${STACK}": Region is missing (give --region, or set AWS_REGION or a profile's region)`,
      );
    } finally {
      for (const [name, value] of Object.entries(saved)) if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('refuses a --bucket that is not the stack\'s', async () => {
    await expect(status({ stack: STACK, bucket: 'someone-else', endpoint: stack.emulator.endpoint, dataset: 'sales' })).rejects.toThrow(
      `--bucket someone-else is not the bucket of stack "${STACK}" (${stack.bucket})`,
    );
  });
});
