/** The objects a run keeps in the store: its manifest (fixed) and the aggregator's state (versioned). */
import type { ModelConfig } from '../config.js';
import type { ColumnPlan, DataFile, Standardization } from '../data/dataset.js';
import type { Kernel } from '../kernel/types.js';
import type { ReportFigures } from '../model/report.js';
import type { GammaParams, GlobalState } from '../model/posterior.js';
import { specOfPlan, type ModelSpec } from '../model/spec.js';
import { NotFoundError, type ObjectStore, type Queue } from './ports.js';
import { decodeBinary, encodeBinary } from './binary.js';
import { packSymmetric, unpackSymmetric } from '../model/spec.js';
import type { Phase, RoundRef, SkippedRowReport } from './protocol.js';

export interface Shard {
  index: number;
  /** Index into manifest.files. */
  file: number;
  start: number;
  end: number;
}

export interface Manifest {
  format: 'clusterwise/manifest@2';
  dataset: string;
  runId: string;
  createdAt: string;
  config: ModelConfig;
  plan: ColumnPlan;
  standardization: Standardization;
  files: DataFile[];
  shards: Shard[];
  rowEstimate: number;
  /** The sample: its rows, and the initialization's ELBO on it (null after a warm start). */
  sample: { rows: number; skipped: number; elbo: number | null; restartElbos: number[] };
  /** Tasks (shards) per SVI step: the worker concurrency the run was planned for. */
  stepWidth: number;
  /** Workers store each shard's parsed rows on first read (keys.shardRows) and later passes read those. */
  binaryShards: boolean;
  /** Write per-row assignments at the end. */
  assign: boolean;
  /**
   * Workers were told to store the shards' binary copies while the planner initialized
   * (RoleContext.announceShards): a first read looks for the copy before it reads CSV.
   */
  prefetched?: boolean;
  /** The model this run warm-started from, if any. */
  warmStartFrom?: string;
}

export function specOf(manifest: Pick<Manifest, 'config' | 'plan'>): ModelSpec {
  return specOfPlan(manifest.config, manifest.plan);
}

/** The round in flight, with what the aggregator needs to form its tasks again. */
export interface RoundState extends RoundRef {
  /** SVI: position of the round's first shard in the epoch's order; batch and assign: 0. */
  offset: number;
}

/**
 * What the aggregator rewrites once per round, with a conditional put. Its size does not grow with
 * the number of tasks: shard counts live in `counts/` objects, the trace in posterior versions.
 */
export interface RunState {
  format: 'clusterwise/state@2';
  status: 'running' | 'done' | 'failed';
  phase: Phase | 'done';
  version: number;
  posteriorKey: string;
  /** SVI steps applied (t in ρ_t). */
  step: number;
  /** The round whose tasks are out; null once the run ended. */
  round: RoundState | null;
  /** Shards reported at least once: a bitmap (base64), and their summed counts. */
  seen: { shards: string; count: number; rows: number; skipped: number; missing?: Record<string, number> };
  /** Skipped-row details with shard-local lines (numbered in the file at the end), at most MAX_SKIPPED_EXAMPLES. */
  skippedExamples: (SkippedRowReport & { shard: number })[];
  /** N once every shard has reported, else null (the manifest's estimate is used). */
  totalRows: number | null;
  converged: boolean;
  /** The latest trace entry (what progress shows). */
  latest: TraceEntry | null;
  /**
   * Merge and delete moves of the batch phase (moves.ts contract): keys rejected since the last
   * accepted move, and while a candidate is swept, its key and the sweep it was proposed from
   * (that sweep's sums stay readable under its round id).
   */
  moves?: MovesState;
  failure?: string;
  resultKey?: string;
  updatedAt: string;
}

export interface MovesState {
  exclude: string[];
  candidate?: string;
  /** The sweep the candidate replaces: its round (to read its sums again) and its posterior version. */
  base?: { round: Pick<RoundState, 'id' | 'tasks' | 'fanIn'>; posteriorKey: string };
}

/** The state's bitmap of shards seen, as bytes (room for every shard of the manifest). */
export function seenBits(manifest: Pick<Manifest, 'shards'>, state: Pick<RunState, 'seen'>): Buffer {
  const bits = Buffer.alloc(Math.ceil(manifest.shards.length / 8));
  Buffer.from(state.seen.shards, 'base64').copy(bits);
  return bits;
}

export const isSeen = (bits: Buffer, shard: number) => (bits[shard >> 3] & (1 << (shard & 7))) !== 0;
export const markSeen = (bits: Buffer, shard: number) => void (bits[shard >> 3] |= 1 << (shard & 7));

/** One entry of the ELBO trace: per SVI step an estimate (with its ρ), per batch sweep the exact value. */
export interface TraceEntry {
  phase: Phase;
  round: number;
  version: number;
  elbo: number;
  rho?: number;
}

/** A stored posterior version: λ, q(α), and the trace of the run up to it (binary, keys.posterior). */
export interface PosteriorVersion {
  version: number;
  state: GlobalState;
  trace: TraceEntry[];
}

export function encodePosterior(spec: ModelSpec, doc: PosteriorVersion): Uint8Array {
  return encodeBinary(
    { format: 'clusterwise/posterior@2', version: doc.version, alpha: doc.state.alpha, trace: doc.trace },
    { lambda: packSymmetric(spec, doc.state.lambda) },
  );
}

export function decodePosterior(spec: ModelSpec, bytes: Uint8Array, key: string): PosteriorVersion {
  const { header, arrays } = decodeBinary<{ version: number; alpha: GammaParams | null; trace: TraceEntry[] }>(bytes, key);
  return { version: header.version, state: { lambda: unpackSymmetric(spec, arrays.lambda as Float64Array), alpha: header.alpha }, trace: header.trace };
}

export async function readPosterior(store: ObjectStore, spec: ModelSpec, key: string): Promise<PosteriorVersion> {
  return decodePosterior(spec, (await store.get(key)).body, key);
}

export async function readJson<T>(store: ObjectStore, key: string): Promise<{ value: T; etag: string }> {
  const { body, etag } = await store.get(key);
  return { value: JSON.parse(Buffer.from(body).toString('utf8')) as T, etag };
}

export async function readJsonIfExists<T>(store: ObjectStore, key: string): Promise<{ value: T; etag: string } | undefined> {
  try {
    return await readJson<T>(store, key);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}

export function jsonBody(value: unknown): string {
  return JSON.stringify(value);
}

/** Structured logging, as Powertools' Logger does on Lambda and a console locally. */
export interface Log {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export const silentLog: Log = { info() {}, warn() {}, error() {} };

/** What the roles run on: the ports, the kernel, a log. */
export interface RoleContext {
  /** Bucket (or folder) holding datasets/, runs/ and models/. */
  store: ObjectStore;
  /** Where data keys are read from. @default store */
  dataStore?: ObjectStore;
  tasks: Queue;
  updates: Queue;
  log?: Log;
  /** Progress after every applied update (the local CLI draws it). */
  onProgress?: (progress: Progress) => void;
  /** Planning's phases before any task (the local CLI shows them): reading the sample, initializing. */
  onPhase?: (phase: PlanPhase) => void;
  /** Workers that can run at once (Lambda concurrency, local threads): how many tasks to keep in flight. */
  workerConcurrency?: number;
  /**
   * Dead-letter queues: a message that fails for good is sent there at once and acknowledged
   * (lib/pipeline/failures.ts). @default none: the queue's redrive moves it after its last delivery
   */
  deadLetter?: { tasks?: Queue; updates?: Queue; uploads?: Queue };
  /**
   * Renders report.html at the end of a run, and warms itself up on a run's planning message.
   * @default in this thread (aggregator.ts inThreadReport: vega loaded and a throwaway report
   * rendered on the planning message); the local runner passes its helper thread
   */
  report?: ReportPort;
  /**
   * Told the run's shards as soon as planning has cut them, before it initializes, so that the
   * workers can read and parse them meanwhile (the local runner's threads do: WorkerCache.prefetch).
   */
  onShardsPlanned?: (planned: ShardPlan) => void;
  /**
   * Send the tasks queue a prefetch message per shard once the sample is standardized, so that
   * workers parse the shards and store their binary copies while the planner initializes (the AWS
   * roles; docs/deploy.md §6). @default false (the local runner's threads prefetch in memory)
   */
  announceShards?: boolean;
  /**
   * Before the sample is read, send the tasks queue one wake message per worker the run will use
   * (WakeMessage), so that their cold starts pass while the planner samples. Only where the whole
   * concurrency is available at once (provisioned pollers, docs/deploy.md §6): under Lambda's
   * standard ramp the wakes would take the few invocations there are. @default false
   */
  wakeWorkers?: boolean;
}

/** What a worker needs of a run to read and parse a shard: fixed before the run's first round. */
export type ShardPlan = Pick<Manifest, 'runId' | 'plan' | 'files' | 'shards'>;

/**
 * What a worker needs to store a shard's binary copy (standardized rows) before the manifest
 * exists: fixed once the planner has standardized its sample. Its `plan.x` may hold more columns
 * than the manifest's, which clusters on the relevant ones only (inference/relevance.ts); a copy
 * names its columns, and a reader keeps the manifest's.
 */
export type PrefetchPlan = ShardPlan & Pick<Manifest, 'dataset' | 'standardization'>;

/** renderReport's arguments (lib/model/report.ts), answered asynchronously. */
export type ReportRenderer = (...args: Parameters<typeof import('../model/report.js').renderReport>) => Promise<string>;

/** Where the aggregator's report is rendered. */
export interface ReportPort {
  /**
   * Make the render at the end of the run warm, on the run's planning message: the aggregator is
   * idle then, and its last invocation, which renders, is on the run's critical path.
   */
  warm(): Promise<void>;
  /** The report; its last argument may be the posterior's figures, rendered ahead (`figures`). */
  render: ReportRenderer;
  /**
   * A version's figures (report.ts renderFigures), rendered while the sweep that may end the run
   * on that version runs, so the render at the end only adds the trace's parts. Absent: the render
   * at the end does it all (the local runner: its sweeps take less time than a render, and the
   * two would share the cores).
   */
  figures?: (...args: Parameters<typeof import('../model/report.js').renderFigures>) => Promise<ReportFigures>;
}

export interface WorkerContext extends RoleContext {
  kernel: Kernel;
}

/**
 * What a delivery from the tasks queue is handled with: the kernel may still be loading (a cold
 * Lambda container), as only a task needs it; a prefetch or a wake goes on meanwhile.
 */
export interface DeliveryContext extends RoleContext {
  kernel: Kernel | Promise<Kernel>;
}

/** A planning step: `done` of `total` (sample rows read, initialization restarts finished). */
export interface PlanPhase {
  phase: 'sample' | 'initialize';
  done: number;
  total: number;
  /**
   * Initialization after the first fit of the covariate selection (relevance.ts): which fit, on how
   * many of the candidate clustering columns. Absent for the first fit (every column).
   */
  selection?: { fit: number; columns: number; candidates: number };
}

/** What `status` and the progress bar show. */
export interface Progress {
  dataset: string;
  runId: string;
  status: RunState['status'];
  phase: RunState['phase'];
  round: number;
  rounds: number;
  shardsDone: number;
  shards: number;
  /** Latest ELBO in the data's units (an estimate during SVI, exact after a batch sweep). */
  elbo: number | null;
  /** Where that ELBO comes from, e.g. "sweep 3" or "SVI epoch 1 (estimate)". */
  elboFrom: string | null;
  rows: number;
  skipped: number;
  converged: boolean;
  failure?: string;
}
