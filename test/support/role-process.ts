/**
 * One pipeline role in a process of its own, against an S3/SQS endpoint (the emulator), standing
 * in for a Lambda function behind its event source mapping: `worker` takes one task at a time
 * from the tasks queue, `aggregator` up to 10 updates from the FIFO queue. Runs until the parent
 * sends "stop" (or the run ends, for the aggregator), then prints its request counts as one JSON
 * line (lib/pipeline/counting.ts, the simulator's definitions).
 *
 *   node --import tsx test/support/role-process.ts '{"role":"worker","endpoint":…,"bucket":…,"tasks":…,"updates":…}'
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { S3ObjectStore } from '../../adapters/aws/s3-object-store.js';
import { SqsQueue } from '../../adapters/aws/sqs-queue.js';
import { loadKernel } from '../../lib/kernel/backend.js';
import { handleUpdates } from '../../lib/pipeline/aggregator.js';
import { countingQueue, countingStore, emptyCounts } from '../../lib/pipeline/counting.js';
import { parseMessage, UpdateMessage } from '../../lib/pipeline/protocol.js';
import { handleTaskDelivery, WorkerCache } from '../../lib/pipeline/worker.js';
import { clientConfig } from './emulator.js';

const options = JSON.parse(process.argv[2]) as { role: 'worker' | 'aggregator'; endpoint: string; bucket: string; tasks: string; updates: string };
const counts = emptyCounts();
const s3 = new S3Client(clientConfig(options.endpoint));
const sqs = new SQSClient(clientConfig(options.endpoint));
const store = countingStore(new S3ObjectStore({ client: s3, bucket: options.bucket }), counts);
const tasks = countingQueue(new SqsQueue({ client: sqs, queueUrl: options.tasks, store }), counts);
const updates = countingQueue(new SqsQueue({ client: sqs, queueUrl: options.updates, store }), counts);
const kernel = await loadKernel('auto');
const ctx = { store, tasks, updates, kernel };

let stopping = false;
process.on('message', (m) => {
  if (m === 'stop') stopping = true;
});
process.send?.('ready');

const cache = new WorkerCache();
let ended = false;
while (!stopping && !ended) {
  if (options.role === 'worker') {
    const [task] = await tasks.receive(1, 1);
    if (!task) continue;
    await handleTaskDelivery(ctx, task, 3, cache).then(
      () => tasks.delete(task),
      (error: unknown) => {
        // A failed task goes back to the queue, as Lambda's mapping does; say why, for the test's log.
        console.error(`worker ${process.pid}: task failed, released:`, error instanceof Error ? error.stack : error);
        return tasks.release(task, 0);
      },
    );
  } else {
    const batch = await updates.receive(10, 1);
    if (!batch.length) continue;
    const done = await handleUpdates(ctx, batch.map((m) => parseMessage(UpdateMessage, m.body, 'updates')));
    for (const m of batch) await updates.delete(m);
    ended = done.length > 0;
  }
}
process.send?.({ counts });
s3.destroy();
sqs.destroy();
process.disconnect?.();
