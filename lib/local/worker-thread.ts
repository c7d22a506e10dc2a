/**
 * A local worker thread: the same worker role as the AWS worker Lambda (lib/pipeline/worker.ts),
 * with a folder for objects and the updates queue proxied to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { InternalError } from '../errors.js';
import { loadKernel, type BackendName } from '../kernel/backend.js';
import { FolderObjectStore } from '../pipeline/folder-store.js';
import type { Queue, QueueMessage, SendOptions } from '../pipeline/ports.js';
import { handleTaskDelivery, WorkerCache } from '../pipeline/worker.js';
import type { FromWorker, ToWorker, WorkerInit } from './threads.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

/** Only `send` is used by the worker role; the main thread owns the real queues. */
function proxyQueue(name: string): Queue {
  const unsupported = async (): Promise<never> => {
    throw new InternalError(`${name}: not available in a worker thread`);
  };
  return {
    name,
    async send(body: string, options?: SendOptions) {
      post({ type: 'send', body, groupId: options?.groupId, deduplicationId: options?.deduplicationId });
    },
    async sendBatch(entries) {
      for (const e of entries) await this.send(e.body, e.options);
    },
    receive: unsupported,
    delete: unsupported,
    release: unsupported,
    depth: unsupported,
  };
}

const stores = {
  store: new FolderObjectStore(init.storeRoot, { durable: false }),
  dataStore: new FolderObjectStore(init.dataRoot, { durable: false, etags: 'stat' }),
};
const cache = new WorkerCache();
// Listening before the kernel loads: a prefetch (reading and parsing needs no kernel) starts at once.
const ready = loadKernel(init.backend as BackendName).then((kernel) => ({
  ...stores,
  tasks: proxyQueue(init.tasksQueueName),
  updates: proxyQueue('updates'),
  kernel,
}));
port.on('message', async (m: ToWorker) => {
  if (m.type === 'prefetch') return cache.prefetch(stores, m.planned, m.shards);
  const message: QueueMessage = m.message;
  try {
    await handleTaskDelivery(await ready, message, init.maxReceiveCount, cache);
    post({ type: 'done', receipt: message.receipt });
  } catch (error) {
    post({ type: 'done', receipt: message.receipt, error: error instanceof Error ? error.message : String(error) });
  }
});
post({ type: 'ready', kernel: (await ready).kernel.name });
