/** The message shapes between the local runner (main thread) and its worker threads. */
export interface WorkerInit {
  storeRoot: string;
  dataRoot: string;
  backend: string;
  maxReceiveCount: number;
  tasksQueueName: string;
}

export type ToWorker = { type: 'task'; message: { id: string; body: string; receipt: string; receiveCount: number } };

export type FromWorker =
  | { type: 'ready'; kernel: string }
  | { type: 'send'; body: string; groupId?: string; deduplicationId?: string }
  | { type: 'done'; receipt: string; error?: string };

/** Object keys for files on this machine: the absolute path without its leading separator. */
export function localDataKey(absolutePath: string): string {
  return absolutePath.replace(/^\/+/, '');
}
