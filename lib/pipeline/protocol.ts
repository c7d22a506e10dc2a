/**
 * The one module for what crosses a queue or lands in the object store between roles: message
 * schemas (zod) and object keys. Numeric objects use the binary format of binary.ts.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ClusterwiseError } from '../errors.js';

// ---- float64 vectors in JSON documents (posterior.json's state) as base64 of their little-endian bytes ----

export function encodeFloat64(v: Float64Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

export function decodeFloat64(text: string): Float64Array {
  const bytes = Buffer.from(text, 'base64');
  const out = new Float64Array(bytes.length / 8);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

// ---- object keys (docs/deploy.md §2, "Object layout") ----

/**
 * Tags of run intermediates (posterior versions, offloaded queue payloads): the bucket's lifecycle
 * rule expires tagged objects under runs/ (infra/constructs/data-bucket.ts); results, manifests and
 * run states are untagged and stay.
 */
export const INTERMEDIATE_TAGS: Readonly<Record<string, string>> = { 'clusterwise:intermediate': 'true' };

const pad = (n: number, width: number) => String(n).padStart(width, '0');

export const keys = {
  dataPrefix: (dataset: string) => `datasets/${dataset}/data/`,
  modelConfig: (dataset: string) => `datasets/${dataset}/model.json`,
  runPrefix: (dataset: string, runId: string) => `runs/${dataset}/${runId}/`,
  manifest: (dataset: string, runId: string) => `runs/${dataset}/${runId}/manifest.json`,
  state: (dataset: string, runId: string) => `runs/${dataset}/${runId}/state.json`,
  /** Versions carry a unique suffix so a losing aggregator's write never clobbers the winner's. */
  posterior: (dataset: string, runId: string, version: number, writer: string) =>
    `runs/${dataset}/${runId}/posterior/v${pad(version, 6)}-${writer}.bin`,
  /** What workers need to parse shards ahead of the first round (a PrefetchPlan; planner.ts announceShards). */
  prefetchPlan: (dataset: string, runId: string) => `runs/${dataset}/${runId}/prefetch.json`,
  /** A shard's parsed, standardized rows (float32), written on its first read: later passes read no CSV. */
  shardRows: (dataset: string, runId: string, shard: number) => `runs/${dataset}/${runId}/shards/s${pad(shard, 6)}.bin`,
  /** One task's statistics, under its group's prefix (the group's combiner lists that prefix). */
  partialPrefix: (dataset: string, runId: string, roundId: string, group: number) => `runs/${dataset}/${runId}/rounds/${roundId}/g${pad(group, 5)}/`,
  partial: (dataset: string, runId: string, roundId: string, group: number, task: number) =>
    `${keys.partialPrefix(dataset, runId, roundId, group)}t${pad(task, 6)}.bin`,
  /** A group's sum, under the round's prefix (whoever completes the last group lists it). */
  groupSumPrefix: (dataset: string, runId: string, roundId: string) => `runs/${dataset}/${runId}/rounds/${roundId}/sums/`,
  groupSum: (dataset: string, runId: string, roundId: string, group: number) =>
    `${keys.groupSumPrefix(dataset, runId, roundId)}g${pad(group, 5)}.bin`,
  /** Per-shard counts (rows, skipped, lines) of the shards first seen in a round: history, not hot state. */
  shardCountsPrefix: (dataset: string, runId: string) => `runs/${dataset}/${runId}/counts/`,
  shardCounts: (dataset: string, runId: string, roundId: string) => `runs/${dataset}/${runId}/counts/${roundId}.json`,
  /** Up to MAX_PLOTTED_ROWS rows of the planner's sample, in data units, for the report's plots. */
  reportSample: (dataset: string, runId: string) => `runs/${dataset}/${runId}/sample.json`,
  result: (dataset: string, runId: string, name: string) => `runs/${dataset}/${runId}/result/${name}`,
  assignmentPart: (dataset: string, runId: string, shard: number) =>
    `runs/${dataset}/${runId}/result/assignments/part-${pad(shard, 5)}.csv`,
  latestModel: (dataset: string) => `models/${dataset}/latest.json`,
  /** Present while a run of the dataset is active; its body names the run and a pending refit. */
  activeRun: (dataset: string) => `runs/${dataset}/active.json`,
};

/**
 * Dataset names are single path segments: letters, digits, dot, dash, underscore, and not "." or
 * ".." (which would step out of datasets/, runs/ and models/). Checked at every entry: uploads,
 * the schedule, the planner function, `submit`.
 */
export const DatasetName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,128}$/, 'a dataset name has 1 to 128 letters, digits, ".", "-", "_"')
  .refine((name) => name !== '.' && name !== '..', 'a dataset name cannot be "." or ".."');

/** The name if it is a valid dataset name, else undefined. */
export function validDatasetName(name: string): string | undefined {
  return DatasetName.safeParse(name).success ? name : undefined;
}

export const Phase = z.enum(['svi', 'batch', 'assign']);
export type Phase = z.infer<typeof Phase>;

/**
 * A round: tasks that all run against one posterior version and whose statistics are reduced to
 * one total before the aggregator decides (an SVI step, a batch sweep, or the assignment pass).
 * Task i belongs to group ⌊i / fanIn⌋; the group's sum is formed by whichever of its tasks sees
 * the whole group written, the round's by whichever group sum completes the round (worker.ts).
 */
export const RoundRef = z.object({
  /** Unique for this round and this aggregator invocation: names the round's objects. */
  id: z.string().regex(/^[A-Za-z0-9._-]{1,80}$/),
  phase: Phase,
  /** SVI epoch or batch sweep number. */
  number: z.number().int().min(0),
  baseVersion: z.number().int().min(0),
  tasks: z.number().int().min(1),
  fanIn: z.number().int().min(1),
});
export type RoundRef = z.infer<typeof RoundRef>;

/** Groups of a round, and the size of group g. */
export function groupCount(round: Pick<RoundRef, 'tasks' | 'fanIn'>): number {
  return Math.ceil(round.tasks / round.fanIn);
}
export function groupSize(round: Pick<RoundRef, 'tasks' | 'fanIn'>, group: number): number {
  return Math.min(round.fanIn, round.tasks - group * round.fanIn);
}

/** Aggregator → worker (tasks queue): task `index` of a round reads shard `shard`. */
export const TaskMessage = z.object({
  kind: z.literal('task'),
  dataset: DatasetName,
  runId: z.string().min(1),
  taskId: z.string().min(1),
  round: RoundRef,
  index: z.number().int().min(0),
  shard: z.number().int().min(0),
  posteriorKey: z.string().min(1),
  /** No earlier round has read the shard (so it has no binary copy yet). */
  fresh: z.boolean().optional(),
  /** assign phase: reported cluster number for each component (−1: not reported). */
  clusterOf: z.array(z.number().int()).optional(),
  /** assign phase: index of the shard's first row among all rows. */
  rowOffset: z.number().int().min(0).optional(),
});
export type TaskMessage = z.infer<typeof TaskMessage>;

/**
 * Aggregator → worker: a refit was requested while the run went; start it (needs the kernel).
 * `after` names the released run that owes it: once another run claimed the dataset since, the
 * refit was served (that run read the data after the release) and a copy of it changes nothing.
 */
export const RefitMessage = z.object({ kind: z.literal('refit'), dataset: DatasetName, after: z.string().min(1).optional() });
export type RefitMessage = z.infer<typeof RefitMessage>;

/**
 * Planner → workers, while it initializes: parse these shards and store their binary copies
 * (keys.shardRows), so the first round reads no CSV. Advisory: a prefetch that fails is logged and
 * dropped, and the shard's first task reads the CSV as without one.
 */
export const PrefetchMessage = z.object({ kind: z.literal('prefetch'), dataset: DatasetName, runId: z.string().min(1), shards: z.array(z.number().int().min(0)).min(1) });
export type PrefetchMessage = z.infer<typeof PrefetchMessage>;

/**
 * Planner → workers, before it reads its sample: nothing to do. A container's first invocation is
 * its cold start (runtime, bundle, wasm kernel), so one wake per worker the run will use has those
 * pass while the planner samples, and the prefetch and first tasks find warm containers.
 */
export const WakeMessage = z.object({ kind: z.literal('wake'), dataset: DatasetName, runId: z.string().min(1) });
export type WakeMessage = z.infer<typeof WakeMessage>;

/** What the tasks queue carries. */
export const TasksQueueMessage = z.discriminatedUnion('kind', [TaskMessage, RefitMessage, PrefetchMessage, WakeMessage]);
export type TasksQueueMessage = z.infer<typeof TasksQueueMessage>;

export const SkippedRowReport = z.object({
  file: z.string(),
  /** Line within the shard's bytes (0-based); the aggregator turns it into a file line. */
  line: z.number().int(),
  column: z.string(),
  value: z.string(),
  reason: z.string(),
});
export type SkippedRowReport = z.infer<typeof SkippedRowReport>;

/** Worker → aggregator (updates queue, FIFO, group = run id): every group sum of the round is written. */
export const RoundCompleteMessage = z.object({
  kind: z.literal('round-complete'),
  dataset: DatasetName,
  runId: z.string().min(1),
  roundId: z.string().min(1),
});
export type RoundCompleteMessage = z.infer<typeof RoundCompleteMessage>;

/** Worker → aggregator: a task failed for good (its last delivery); the run cannot finish. */
export const TaskFailedMessage = z.object({
  kind: z.literal('task-failed'),
  dataset: DatasetName,
  runId: z.string().min(1),
  /** The task's round, or "unknown" for a body too broken to name it. */
  roundId: z.string().min(1),
  taskId: z.string(),
  reason: z.string(),
});
export type TaskFailedMessage = z.infer<typeof TaskFailedMessage>;

/**
 * Aggregator → itself: applying a run's updates failed for good (lib/pipeline/update-delivery.ts), so the
 * run fails with this reason. Never sent by a worker; on the queue it would be applied the same way.
 */
export const RunFailedMessage = z.object({
  kind: z.literal('run-failed'),
  dataset: DatasetName,
  runId: z.string().min(1),
  /** The round in flight when it failed, or "unknown" (not used: the run fails whatever its round). */
  roundId: z.string().min(1),
  reason: z.string(),
});
export type RunFailedMessage = z.infer<typeof RunFailedMessage>;

/**
 * Planner → aggregator, as it announces the shards (AWS): nothing to apply. It starts an aggregator
 * container while the planner initializes, so the first round's end does not wait for a cold start
 * (Lambda keeps the container for the run's later messages; docs/deploy.md §6).
 */
export const PlanningMessage = z.object({ kind: z.literal('planning'), dataset: DatasetName, runId: z.string().min(1) });
export type PlanningMessage = z.infer<typeof PlanningMessage>;

export const UpdateMessage = z.discriminatedUnion('kind', [RoundCompleteMessage, TaskFailedMessage, RunFailedMessage, PlanningMessage]);
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

/** A message that does not parse: permanent (the same body fails the same way on every delivery). */
export class ProtocolError extends ClusterwiseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

/**
 * FIFO settings for an update: one group per run (one writer). A round completes once, however
 * many workers saw it complete, so its completion is deduplicated by the round id.
 */
export function updateSendOptions(message: UpdateMessage) {
  // FIFO deduplication is per queue, and ids are at most 128 characters: hash the full identity.
  const identity = [message.kind, message.dataset, message.runId, 'roundId' in message ? message.roundId : '', message.kind === 'task-failed' ? message.taskId : ''];
  return { groupId: message.runId, deduplicationId: createHash('sha256').update(identity.join('\n')).digest('hex') };
}
