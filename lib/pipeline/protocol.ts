/**
 * The one module for what crosses a queue or lands in the object store between roles: message
 * schemas (zod), object keys, and the float64 encoding of statistics.
 */
import { z } from 'zod';

// ---- float64 vectors travel as base64 of their little-endian bytes (exact, 8 bytes a value) ----

export function encodeFloat64(v: Float64Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

export function decodeFloat64(text: string): Float64Array {
  const bytes = Buffer.from(text, 'base64');
  const out = new Float64Array(bytes.length / 8);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

// ---- object keys (DESIGN.md §3) ----

/**
 * Tags of run intermediates (posterior versions, offloaded queue payloads): the bucket's lifecycle
 * rule expires tagged objects under runs/ (infra/constructs/data-bucket.ts); results, manifests and
 * run states are untagged and stay.
 */
export const INTERMEDIATE_TAGS: Readonly<Record<string, string>> = { 'clusterwise:intermediate': 'true' };

export const keys = {
  dataPrefix: (dataset: string) => `datasets/${dataset}/data/`,
  modelConfig: (dataset: string) => `datasets/${dataset}/model.json`,
  runPrefix: (dataset: string, runId: string) => `runs/${dataset}/${runId}/`,
  manifest: (dataset: string, runId: string) => `runs/${dataset}/${runId}/manifest.json`,
  state: (dataset: string, runId: string) => `runs/${dataset}/${runId}/state.json`,
  /** Versions carry a unique suffix so a losing aggregator's write never clobbers the winner's. */
  posterior: (dataset: string, runId: string, version: number, writer: string) =>
    `runs/${dataset}/${runId}/posterior/v${String(version).padStart(6, '0')}-${writer}.json`,
  result: (dataset: string, runId: string, name: string) => `runs/${dataset}/${runId}/result/${name}`,
  assignmentPart: (dataset: string, runId: string, shard: number) =>
    `runs/${dataset}/${runId}/result/assignments/part-${String(shard).padStart(5, '0')}.csv`,
  latestModel: (dataset: string) => `models/${dataset}/latest.json`,
  /** Present while a run of the dataset is active; its body names the run and a pending refit. */
  activeRun: (dataset: string) => `runs/${dataset}/active.json`,
};

/**
 * Queue names of a deployed stack (its CloudFormation stack name as the prefix), so that the CLI
 * and tests find the queues by name. FIFO names must end in ".fifo".
 */
export function queueNames(stackName: string) {
  return {
    tasks: `${stackName}-tasks`,
    tasksDeadLetter: `${stackName}-tasks-dlq`,
    updates: `${stackName}-updates.fifo`,
    updatesDeadLetter: `${stackName}-updates-dlq.fifo`,
  };
}

/** Dataset names are path segments: letters, digits, dot, dash, underscore. */
export const DatasetName = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'letters, digits, ".", "-", "_" only');

export const Phase = z.enum(['svi', 'batch', 'assign']);
export type Phase = z.infer<typeof Phase>;

/** What names a task: its run, its shard, and the posterior version it was computed against. */
const TaskIdentity = z.object({
  dataset: DatasetName,
  runId: z.string().min(1),
  taskId: z.string().min(1),
  shard: z.number().int().min(0),
  phase: Phase,
  /** SVI epoch or batch sweep number. */
  round: z.number().int().min(0),
  baseVersion: z.number().int().min(0),
});

/** Planner/aggregator → worker (tasks queue). */
export const TaskMessage = TaskIdentity.extend({
  kind: z.literal('task'),
  posteriorKey: z.string().min(1),
  /** assign phase: reported cluster number for each component (−1: not reported). */
  clusterOf: z.array(z.number().int()).optional(),
  /** assign phase: index of the shard's first row among all rows. */
  rowOffset: z.number().int().min(0).optional(),
});
export type TaskMessage = z.infer<typeof TaskMessage>;

/** Aggregator → worker: a refit was requested while the run went; start it (needs the kernel). */
export const RefitMessage = z.object({ kind: z.literal('refit'), dataset: DatasetName });
export type RefitMessage = z.infer<typeof RefitMessage>;

/** What the tasks queue carries. */
export const TasksQueueMessage = z.discriminatedUnion('kind', [TaskMessage, RefitMessage]);
export type TasksQueueMessage = z.infer<typeof TasksQueueMessage>;

export const SkippedRowReport = z.object({
  file: z.string(),
  /** Line within the shard's bytes (0-based); the aggregator turns it into a file line. */
  line: z.number().int(),
  column: z.string(),
  value: z.string(),
  reason: z.string(),
});

/** Worker → aggregator (updates queue, FIFO, group = run id). */
export const ResultMessage = TaskIdentity.extend({
  kind: z.literal('result'),
  rows: z.number().int().min(0),
  skipped: z.number().int().min(0),
  /** Physical lines the shard owns (blank ones included), to number lines across shards. */
  lines: z.number().int().min(0),
  skippedExamples: z.array(SkippedRowReport),
  logLik: z.number(),
  /** S_B, base64 float64 in the layout of model/spec.ts (absent in the assign phase). */
  stats: z.string().optional(),
});
export type ResultMessage = z.infer<typeof ResultMessage>;

/** Worker → aggregator: a task failed for good (its last delivery); the run cannot finish. */
export const TaskFailedMessage = z.object({
  kind: z.literal('task-failed'),
  dataset: DatasetName,
  runId: z.string().min(1),
  taskId: z.string(),
  reason: z.string(),
});
export type TaskFailedMessage = z.infer<typeof TaskFailedMessage>;

export const UpdateMessage = z.discriminatedUnion('kind', [ResultMessage, TaskFailedMessage]);
export type UpdateMessage = z.infer<typeof UpdateMessage>;

/** Parse a JSON body with a schema; the error names the queue and the first problems. */
export function parseMessage<S extends z.ZodType>(schema: S, body: string, where: string): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (cause) {
    throw new ProtocolError(`${where}: message is not JSON: ${body.slice(0, 120)}`, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ProtocolError(`${where}: malformed message (${problems.join('; ')})`);
  }
  return parsed.data;
}

export class ProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

/** FIFO settings for an update: one group per run (one writer), deduplicated by task id. */
export function updateSendOptions(message: { runId: string; taskId: string; kind: string }) {
  return { groupId: message.runId, deduplicationId: `${message.kind}-${message.taskId}` };
}
