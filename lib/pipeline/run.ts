/** The objects a run keeps in the store: its manifest (fixed) and the aggregator's state (versioned). */
import type { ModelConfig } from '../config.js';
import type { ColumnPlan, DataFile, Standardization } from '../data/dataset.js';
import type { Kernel } from '../kernel/types.js';
import type { GammaParams, GlobalState } from '../model/posterior.js';
import { specFromConfig, type ModelSpec } from '../model/spec.js';
import { NotFoundError, type ObjectStore, type Queue } from './ports.js';
import { decodeFloat64, encodeFloat64, type Phase } from './protocol.js';

export interface Shard {
  index: number;
  /** Index into manifest.files. */
  file: number;
  start: number;
  end: number;
}

export interface Manifest {
  format: 'clusterwise/manifest@1';
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
  /** Tasks kept in flight during SVI. */
  inFlight: number;
  /** Write per-row assignments at the end. */
  assign: boolean;
  /** The model this run warm-started from, if any. */
  warmStartFrom?: string;
}

export function specOf(manifest: Pick<Manifest, 'config' | 'plan'>): ModelSpec {
  return specFromConfig(manifest.config, manifest.plan.x.length, manifest.plan.r.length + 1);
}

/** What the aggregator tracks; written with a conditional put after every batch of updates. */
export interface RunState {
  format: 'clusterwise/state@1';
  status: 'running' | 'done' | 'failed';
  phase: Phase | 'done';
  version: number;
  posteriorKey: string;
  /** SVI steps applied (t in ρ_t). */
  step: number;
  /** SVI epoch or batch sweep number. */
  round: number;
  /** Shards not yet dispatched in the current SVI epoch. */
  queue: number[];
  inFlight: Record<string, { shard: number; baseVersion: number }>;
  /** Task ids already applied (duplicates change nothing). */
  applied: string[];
  /** Results folded but not yet applied: the SVI step buffer or the batch sweep's sums. */
  pending: { stats: string | null; rows: number; logLik: number; results: number; maxStaleness: number };
  /** Per shard, from its first result: rows kept, rows skipped, physical lines. */
  shards: Record<string, { rows: number; skipped: number; lines: number }>;
  /** Skipped-row details with shard-local lines (numbered in the file at the end). */
  skippedExamples: { shard: number; line: number; file: string; column: string; value: string; reason: string }[];
  /** ELBO per SVI step (an estimate; with the step size ρ used and the results' largest staleness) and per sweep. */
  trace: { phase: Phase; round: number; version: number; elbo: number; staleness?: number; rho?: number }[];
  /** N once every shard has reported, else null (the manifest's estimate is used). */
  totalRows: number | null;
  converged: boolean;
  failure?: string;
  resultKey?: string;
  updatedAt: string;
}

/** A stored posterior version. */
export interface PosteriorVersion {
  version: number;
  lambda: string;
  alpha: GammaParams | null;
}

export function encodeState(version: number, state: GlobalState): PosteriorVersion {
  return { version, lambda: encodeFloat64(state.lambda), alpha: state.alpha };
}

export function decodeState(doc: PosteriorVersion): GlobalState {
  return { lambda: decodeFloat64(doc.lambda), alpha: doc.alpha };
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
  /** Workers that can run at once (Lambda concurrency, local threads): how many tasks to keep in flight. */
  workerConcurrency?: number;
}

export interface WorkerContext extends RoleContext {
  kernel: Kernel;
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
