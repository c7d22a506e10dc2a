/** Sending tasks: shared by the planner (first tasks) and the aggregator (every later task). */
import { randomUUID } from 'node:crypto';
import { createRandom, shuffled } from '../math/random.js';
import type { Queue } from './ports.js';
import type { Phase, TaskMessage } from './protocol.js';
import type { Manifest, RunState } from './run.js';

/** The shard order of SVI epoch `epoch`: a seeded shuffle, the same on every machine. */
export function epochOrder(manifest: Manifest, epoch: number): number[] {
  return shuffled(
    manifest.shards.map((s) => s.index),
    createRandom(manifest.config.seed, 1000 + epoch),
  );
}

/** Whether the data is small enough that SVI would not help: batch VB only (DESIGN.md §2). */
export function batchOnly(manifest: Manifest): boolean {
  return manifest.config.schedule.sviEpochs === 0 || manifest.shards.length <= manifest.config.schedule.shardsPerStep;
}

/** Build tasks for `shards` against the state's current version and record them as in flight. */
export function makeTasks(manifest: Manifest, state: RunState, shards: number[], phase: Phase, clusterOf?: number[]): TaskMessage[] {
  return shards.map((shard) => {
    const taskId = `${phase}-${state.round}-${shard}-v${state.version}-${randomUUID().slice(0, 8)}`;
    state.inFlight[taskId] = { shard, baseVersion: state.version };
    return {
      kind: 'task',
      dataset: manifest.dataset,
      runId: manifest.runId,
      taskId,
      shard,
      phase,
      round: state.round,
      baseVersion: state.version,
      posteriorKey: state.posteriorKey,
      ...(clusterOf ? { clusterOf } : {}),
    };
  });
}

export async function sendTasks(tasks: Queue, messages: TaskMessage[]): Promise<void> {
  if (messages.length) await tasks.sendBatch(messages.map((m) => ({ body: JSON.stringify(m) })));
}

/** The first state of a run, with its first tasks (not yet sent). */
export function initialRunState(manifest: Manifest, posteriorKey: string, now: Date): { state: RunState; tasks: TaskMessage[] } {
  const svi = !batchOnly(manifest);
  const state: RunState = {
    format: 'clusterwise/state@1',
    status: 'running',
    phase: svi ? 'svi' : 'batch',
    version: 0,
    posteriorKey,
    step: 0,
    round: 0,
    queue: svi ? epochOrder(manifest, 0) : [],
    inFlight: {},
    applied: [],
    pending: { stats: null, rows: 0, logLik: 0, results: 0, maxStaleness: 0 },
    shards: {},
    skippedExamples: [],
    trace: [],
    totalRows: null,
    converged: false,
    updatedAt: now.toISOString(),
  };
  const first = svi ? state.queue.splice(0, manifest.inFlight) : manifest.shards.map((s) => s.index);
  return { state, tasks: makeTasks(manifest, state, first, state.phase as Phase) };
}

