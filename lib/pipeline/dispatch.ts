/** Rounds and their tasks: shared by the planner (the first round) and the aggregator (every later one). */
import { createRandom, shuffled } from '../math/random.js';
import type { Queue } from './ports.js';
import type { Phase, TaskMessage } from './protocol.js';
import { isSeen, seenBits, type Manifest, type RoundState, type RunState } from './run.js';

/** The shard order of SVI epoch `epoch`: a seeded shuffle, the same on every machine. */
export function epochOrder(manifest: Manifest, epoch: number): number[] {
  return shuffled(
    manifest.shards.map((s) => s.index),
    createRandom(manifest.config.seed, 1000 + epoch),
  );
}

/** Whether one SVI step would cover every shard: then SVI is a damped batch sweep, so run batch VB only. */
export function batchOnly(manifest: Manifest): boolean {
  return manifest.config.schedule.sviEpochs === 0 || manifest.shards.length <= manifest.stepWidth;
}

/**
 * Fan-in of a round's reduce: √tasks, so both levels (tasks per group, groups per round) stay
 * near √tasks: 20 for 400 tasks, 100 for 10 000.
 */
export function fanInFor(tasks: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(tasks)));
}

/** The shards of a round, in task order. */
export function roundShards(manifest: Manifest, round: Pick<RoundState, 'phase' | 'number' | 'offset' | 'tasks'>): number[] {
  if (round.phase !== 'svi') return manifest.shards.map((s) => s.index);
  return epochOrder(manifest, round.number).slice(round.offset, round.offset + round.tasks);
}

export interface RoundOptions {
  phase: Phase;
  number: number;
  /** SVI: the round's first position in the epoch's order. */
  offset?: number;
  /** SVI: shards in the round. @default every shard */
  tasks?: number;
  /** Names the round's objects apart from any other writer's round of the same version. */
  writer: string;
  /** assign phase: cluster number of each component, and the first row of each shard. */
  clusterOf?: number[];
  rowOffsets?: Map<number, number>;
}

/** Start a round against the state's current version: records it in the state, returns its tasks (not yet sent). */
export function startRound(manifest: Manifest, state: RunState, options: RoundOptions): TaskMessage[] {
  const tasks = options.tasks ?? manifest.shards.length;
  const round: RoundState = {
    id: `${options.phase}${options.number}-o${options.offset ?? 0}-v${state.version}-${options.writer}`,
    phase: options.phase,
    number: options.number,
    baseVersion: state.version,
    tasks,
    fanIn: fanInFor(tasks),
    offset: options.offset ?? 0,
  };
  state.round = round;
  state.phase = options.phase;
  const { offset: _offset, ...ref } = round;
  const seen = seenBits(manifest, state);
  return roundShards(manifest, round).map((shard, index) => ({
    kind: 'task',
    dataset: manifest.dataset,
    runId: manifest.runId,
    taskId: `${round.id}-t${index}`,
    round: ref,
    index,
    shard,
    posteriorKey: state.posteriorKey,
    ...(isSeen(seen, shard) ? {} : { fresh: true }),
    ...(options.clusterOf ? { clusterOf: options.clusterOf } : {}),
    ...(options.rowOffsets ? { rowOffset: options.rowOffsets.get(shard) ?? 0 } : {}),
  }));
}

export async function sendTasks(tasks: Queue, messages: TaskMessage[]): Promise<void> {
  if (messages.length) await tasks.sendBatch(messages.map((m) => ({ body: JSON.stringify(m) })));
}

/** The first state of a run, with its first round's tasks (not yet sent). */
export function initialRunState(manifest: Manifest, posteriorKey: string, now: Date, writer: string): { state: RunState; tasks: TaskMessage[] } {
  const state: RunState = {
    format: 'clusterwise/state@2',
    status: 'running',
    phase: 'batch',
    version: 0,
    posteriorKey,
    step: 0,
    round: null,
    seen: { shards: '', count: 0, rows: 0, skipped: 0 },
    skippedExamples: [],
    totalRows: null,
    converged: false,
    latest: null,
    updatedAt: now.toISOString(),
  };
  const tasks = batchOnly(manifest)
    ? startRound(manifest, state, { phase: 'batch', number: 0, writer })
    : startRound(manifest, state, { phase: 'svi', number: 0, offset: 0, tasks: manifest.stepWidth, writer });
  return { state, tasks };
}
