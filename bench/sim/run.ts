/**
 * One simulated refit: the real planner, worker and aggregator over the modelled ports
 * (ports.ts) and Lambda functions (lambda.ts) under a virtual clock (clock.ts).
 *
 * What is real and what is modelled:
 * - Real: every role's code, every request it makes (and so the request counts and bytes), the
 *   arithmetic of the reduce and of the updates, the schedule's decisions (SVI steps, sweeps,
 *   convergence), and, up to `data.realRows`, every row's statistics (then ELBO and ARI are real).
 * - Modelled: time. A request takes its latency plus bytes / bandwidth; CPU time is the CPU this
 *   machine spent on the same kernel call, codec call or planner run, measured twice: the calling
 *   thread's and the whole process's (V8's compiler and garbage-collector threads too). A function
 *   of memory M has v = M / 1769 MB vCPUs, each lambda.cpuSpeed of a core here; its calling thread
 *   runs on at most one of them, and every thread shares all v, so the call takes
 *   max(thread / min(1, v), process / v) / cpuSpeed (lambdaSeconds). An aggregator invocation adds
 *   lambda.aggregatorCpu; the run's planning message adds loading vega and a throwaway report
 *   (report-warmup.ts), an invocation that publishes a version the run may end on adds that
 *   version's report figures (report.ts renderFigures, rendered ahead), and the invocation that
 *   ends the run the rest of the report, each measured once per process (measured.report). Past
 *   `data.realRows` a shard's rows are an evenly spaced sample of `data.sampleRowsPerShard` lines
 *   weighted up (data.ts), its CPU time is the sample's scaled by
 *   the weight, and its binary copy is charged as the full shard's bytes; the ELBO is then null.
 * - Not modelled: failures and retries, S3 request-rate throttling (3,500 PUT / 5,500 GET per
 *   second per prefix; a round's objects share a prefix per group), the pollers' empty receives,
 *   the planner's invocation by S3 or the schedule.
 */
import { readFileSync } from 'node:fs';
import { parseConfig, type ModelConfigInput } from '../../lib/config.js';
import { parseWith, toBatch } from '../../lib/data/dataset.js';
import { activeComponents, paramsFor, runLocalStep } from '../../lib/inference/vb.js';
import { loadKernel } from '../../lib/kernel/backend.js';
import type { Batch, Kernel } from '../../lib/kernel/types.js';
import { modelOf, type PosteriorDocument } from '../../lib/model/summary.js';
import { handleUpdates } from '../../lib/pipeline/aggregator.js';
import { decodeBinary } from '../../lib/pipeline/binary.js';
import { countingQueue, countingStore, emptyCounts } from '../../lib/pipeline/counting.js';
import { MemoryObjectStore } from '../../lib/pipeline/memory-store.js';
import { MemoryQueue } from '../../lib/pipeline/memory-queue.js';
import { planRun, shardRowsFor } from '../../lib/pipeline/planner.js';
import type { QueueMessage } from '../../lib/pipeline/ports.js';
import { keys, parseMessage, UpdateMessage } from '../../lib/pipeline/protocol.js';
import { readJson, silentLog, type Manifest, type PlanPhase, type PrefetchPlan, type RunState } from '../../lib/pipeline/run.js';
import { csvShardCodec, handleTaskDelivery, WorkerCache, type ShardCodec, type ShardRows } from '../../lib/pipeline/worker.js';
import { adjustedRandIndex } from '../metrics.js';
import { chargeCpu, cpuCharged, invocation, payCpu, VirtualClock } from './clock.js';
import { GeneratedCsv, mixture, surrogateCodec } from './data.js';
import { eventSourceMapping, workerRamp, type FunctionStats, type InvocationRecord } from './lambda.js';
import type { SimParams } from './params.js';
import { generatedStore, SimQueue, timedStore } from './ports.js';
import { FULL_VCPU_MIB } from '../../infra/memory.js';

export interface SimRequest {
  rows: number;
  workers: number;
  params: SimParams;
  /** Model settings over the defaults (target y is set). */
  config?: Partial<ModelConfigInput>;
  /**
   * The run's id. Simulations in one process need different ids: the roles cache what is
   * immutable per run (the manifest) by its id, as a Lambda container does. @default SIM_RUN
   */
  runId?: string;
}

export interface SimResult {
  rows: number;
  workers: number;
  modelled: boolean;
  wallSeconds: number;
  plannerSeconds: number;
  /** The planner's modelled CPU seconds (lambdaSeconds) before its initialization (listing, sample) and in it. */
  plannerCpu: { sample: number; initialize: number };
  costUsd: number;
  cost: { lambda: number; s3: number; sqs: number };
  lambdaGbSeconds: number;
  requests: { s3Get: number; s3Put: number; s3List: number; sqs: number };
  bytes: { read: number; written: number };
  shards: number;
  shardRows: number;
  tasks: number;
  rounds: { svi: number; batch: number };
  /** When each aggregator invocation ended (s): with one round-complete message each, the rounds' ends. */
  roundEnds: number[];
  /** When the last prefetch (the workers parsing announced shards while the planner initializes) ended (s); null without one. */
  prefetchSeconds: number | null;
  /**
   * The aggregator's invocations, busy time (s), its share of the wall, and the modelled CPU of the
   * report (s): at the end, its figures rendered ahead while rounds ran (all rounds'), and its
   * warm-up on the planning message.
   */
  aggregator: { invocations: number; busySeconds: number; utilization: number; reportSeconds: number; reportAheadSeconds: number; reportWarmupSeconds: number };
  /** Task results per second of the aggregator's time on rounds (its cold start and all its report work left out). */
  aggregatorResultsPerSecond: number;
  workerColdStarts: number;
  /** Worker seconds: CPU by kind, cold starts, and the rest (waiting on requests). */
  workerSeconds: Record<string, number>;
  stateBytes: number;
  elbo: number | null;
  ari: number | null;
  converged: boolean;
  timeline: Timeline;
}

/** Invocations of one kind in one phase of the run: when the first started and the last ended (s). */
export interface Span {
  start: number;
  end: number;
  invocations: number;
  /** The median invocation's duration (s). */
  medianSeconds: number;
  /** Mean modelled CPU seconds of an invocation, by kind; the rest of its time is requests. */
  cpu: Record<string, number>;
}

/** When the run's phases began and ended on the virtual clock (s): where its wall time goes. */
export interface Timeline {
  /** The planner's cold start ended; it woke the workers and began sampling; it began initializing; it sent the first tasks. */
  planner: { coldStartEnd: number; sampling: number | null; initializing: number | null; end: number };
  /** When the first and the last worker container's cold start ended. */
  workersWarm: { first: number; last: number } | null;
  /** The workers' prefetch (PrefetchMessage) invocations. */
  prefetch: Span | null;
  /** Each round: its tasks, and the aggregator's invocation on its round-complete. */
  rounds: { id: string; tasks: Span; aggregator: { start: number; end: number } | null }[];
}

/** The simulated dataset and run (what the measured run on the emulator names them too). */
export const SIM_DATASET = 'sim';
export const SIM_RUN = 'run';
const DATASET = SIM_DATASET;
const MIB = 1024 * 1024;

/**
 * CPU seconds of some work: the calling thread's, and the whole process's (the thread's plus what
 * V8's background threads, the optimizing compiler and the garbage collector, did meanwhile).
 * Both are CPU time, unaffected by other processes' load.
 */
export interface CpuTime {
  thread: number;
  process: number;
}

/** This thread's CPU seconds so far (Linux: /proc/thread-self/schedstat, ns on a CPU), else undefined. */
function threadCpuSeconds(): number | undefined {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]) / 1e9;
  } catch {
    return undefined; // not Linux: the thread is taken to be the process
  }
}

/** CPU time spent so far; `cpuSince(cpuNow())` measures what comes between. */
function cpuNow(): CpuTime {
  const used = process.cpuUsage();
  const processSeconds = (used.user + used.system) / 1e6;
  return { thread: threadCpuSeconds() ?? processSeconds, process: processSeconds };
}

const NO_CPU: CpuTime = { thread: 0, process: 0 };

/** The CPU time from mark `a` to mark `b` (cpuNow, or cpuSince of one start); the thread's is part of the process's. */
function cpuBetween(a: CpuTime, b: CpuTime): CpuTime {
  const processSeconds = b.process - a.process;
  return { thread: Math.min(processSeconds, b.thread - a.thread), process: processSeconds };
}

const cpuSince = (start: CpuTime): CpuTime => cpuBetween(start, cpuNow());

/** The CPU time of `f`. */
function cpuTime<T>(f: () => T): [T, CpuTime] {
  const start = cpuNow();
  const out = f();
  return [out, cpuSince(start)];
}

const scaled = (t: CpuTime, factor: number): CpuTime => ({ thread: t.thread * factor, process: t.process * factor });
const summed = (...times: (CpuTime | undefined)[]): CpuTime => times.reduce<CpuTime>((sum, t = NO_CPU) => ({ thread: sum.thread + t.thread, process: sum.process + t.process }), NO_CPU);

/**
 * Seconds a Lambda function of `memoryMb` takes for work that took `t` here: it has
 * v = memoryMb / 1769 vCPUs of `cpuSpeed` cores each; the calling thread runs on at most one, and
 * all threads together on v (so V8's background threads are free only where v > 1).
 */
export function lambdaSeconds(t: CpuTime, memoryMb: number, cpuSpeed: number): number {
  const vcpus = memoryMb / FULL_VCPU_MIB;
  return Math.max(t.thread / Math.min(1, vcpus), t.process / vcpus) / cpuSpeed;
}

/**
 * CPU measured once per process and charged to every simulation it runs: refits compared in one
 * run (`--workers 50,200`) pay the same CPU for the same work, so their ratio is the model's and
 * not this machine's run-to-run noise (±30% when it is busy). Each is keyed by what it depends on.
 */
const measured = {
  /** Seconds per row of the local step, by the data's shape and the number of active components. */
  stepRate: new Map<string, CpuTime>(),
  /** Seconds per row of the kernel's prepare, by the data's shape. */
  prepareRate: new Map<string, CpuTime>(),
  /** Seconds per row of CSV parsing and of decoding a binary copy, by the data's shape. */
  codecRates: new Map<string, { parse: CpuTime; decode: CpuTime }>(),
  /** The planner's CPU (this machine) up to its sample, from there to its initialization, and from there on, by rows, data and config. */
  planner: new Map<string, { start: CpuTime; sample: CpuTime; initialize: CpuTime }>(),
  /**
   * The aggregator's report, as in a container: loading the report module (vega) and the warm-up,
   * the process's first render, on the planning message; a version's figures, rendered ahead while
   * a round runs; the real report at the run's end, warm, with its figures rendered ahead (`rest`)
   * or not (`render`). Charged to every run of the process.
   */
  report: {} as Partial<Record<'load' | 'warmup' | 'figures' | 'rest' | 'render', CpuTime>>,
};

/**
 * The report module, loaded and warmed up (each's CPU measured) once per process, before any clock
 * runs: a real import would await the file system, which the virtual clock cannot see.
 */
async function reportModule(): Promise<typeof import('../../lib/model/report.js')> {
  const started = cpuNow();
  const [module, warmup] = await Promise.all([import('../../lib/model/report.js'), import('../../lib/model/report-warmup.js')]);
  measured.report.load ??= cpuSince(started);
  measured.report.warmup ??= cpuTime(() => warmup.warmReport())[1];
  return module;
}

/**
 * The least CPU time of `runs` calls of `f` (after the caller's warm-up), of the calling thread,
 * taken as the process's too. A per-row rate is charged for every row of a modelled run, so a
 * disturbed measurement would scale up to minutes of worker time, and the disturbances only ever
 * add: page faults of fresh arrays, and above all V8's collector working on the simulation's own
 * heap (large at a billion rows) in the process's other threads meanwhile, which the process's
 * time would charge to the call. (A median of three of the process's time charged one 1B-row
 * simulation 3.4 times another's kernel prepare.) Warm kernel and codec calls barely use those
 * threads themselves (docs/deploy.md §6).
 */
function leastCpuTime(f: () => unknown, runs = 5): CpuTime {
  const thread = Math.min(...Array.from({ length: runs }, () => cpuTime(f)[1].thread));
  return { thread, process: thread };
}

/** Rows of the batches per-row rates are measured on: enough that fixed costs do not show. */
const CALIBRATION_ROWS = 100_000;

/** A batch of about `rows` rows made of copies of `batch` (for measuring per-row rates). */
function tiled(batch: Batch | Batch<Float32Array>, rows = CALIBRATION_ROWS): Batch {
  const copies = Math.ceil(rows / batch.n);
  const tile = (v: Float64Array | Float32Array) => {
    const out = new Float64Array(v.length * copies);
    for (let c = 0; c < copies; c++) out.set(v, c * v.length);
    return out;
  };
  return { n: batch.n * copies, x: tile(batch.x), u: tile(batch.u), y: tile(batch.y) };
}

/**
 * A kernel whose calls add their CPU time here, as the Lambda function's seconds (`lambda`), to the caller's CPU.
 * A weighted batch (a sample standing for a whole shard) is charged per row, at rates measured
 * once on a CALIBRATION_ROWS-row batch (the local step's once per number of active components), so a
 * small call's fixed cost is not multiplied by the weight.
 */
function timedKernel(kernel: Kernel, lambda: (t: CpuTime) => number, shape: string): Kernel<{ inner: unknown; batch: Batch | Batch<Float32Array> }> {
  return {
    name: kernel.name,
    prepare(batch) {
      const [inner, time] = cpuTime(() => kernel.prepare(batch));
      const weight = batch.weight ?? 1;
      let prepareRate = measured.prepareRate.get(shape);
      if (weight !== 1 && prepareRate === undefined) {
        const big = tiled(batch);
        kernel.release(kernel.prepare(big)); // warm-up
        const t = leastCpuTime(() => kernel.release(kernel.prepare(big)));
        measured.prepareRate.set(shape, (prepareRate = scaled(t, 1 / big.n)));
      }
      chargeCpu(lambda(weight === 1 ? time : scaled(prepareRate!, batch.n * weight)), 'kernel prepare');
      return { inner, batch };
    },
    localStep(params, prepared, options) {
      const [out, time] = cpuTime(() => kernel.localStep(params, prepared.inner, options));
      const { batch } = prepared;
      const weight = batch.weight ?? 1;
      if (weight === 1) {
        chargeCpu(lambda(time), 'local step');
        return out;
      }
      const key = `${shape} active=${activeComponents(params).length}`;
      let rate = measured.stepRate.get(key);
      if (rate === undefined) {
        const big = tiled(batch);
        const inner = kernel.prepare(big);
        kernel.localStep(params, inner); // warm-up
        rate = scaled(leastCpuTime(() => kernel.localStep(params, inner)), 1 / big.n);
        kernel.release(inner);
        measured.stepRate.set(key, rate);
      }
      chargeCpu(lambda(scaled(rate, batch.n * weight)), 'local step');
      return out;
    },
    release: (prepared) => kernel.release(prepared.inner),
  };
}

/**
 * The codec's parse and decode, timed the same way: measured, or for a sample standing for a
 * shard, per row at rates measured once on CALIBRATION_ROWS rows of the same data.
 */
function timedCodec(codec: ShardCodec, lambda: (t: CpuTime) => number, data: GeneratedCsv, shape: string): ShardCodec {
  let rates = measured.codecRates.get(shape);
  const calibrate = (manifest: PrefetchPlan, index: number) => {
    const lines = Buffer.from(Array.from({ length: CALIBRATION_ROWS }, (_, i) => data.line(i)).join(''), 'latin1');
    csvShardCodec.parse(manifest, index, lines); // warm-up
    const rows = csvShardCodec.parse(manifest, index, lines);
    const parse = leastCpuTime(() => csvShardCodec.parse(manifest, index, lines));
    const bytes = csvShardCodec.encode(rows);
    csvShardCodec.decode(bytes, 'calibration');
    const decode = leastCpuTime(() => csvShardCodec.decode(bytes, 'calibration'));
    return { parse: scaled(parse, 1 / rows.counts.rows), decode: scaled(decode, 1 / rows.counts.rows) };
  };
  const charge = (rows: ShardRows, time: CpuTime, rate: CpuTime, kind: string) =>
    chargeCpu(lambda((rows.weight ?? 1) === 1 ? time : scaled(rate, rows.counts.rows)), kind);
  return {
    parse(manifest, index, bytes) {
      const [rows, time] = cpuTime(() => codec.parse(manifest, index, bytes));
      if ((rows.weight ?? 1) !== 1 && !rates) measured.codecRates.set(shape, (rates = calibrate(manifest, index)));
      charge(rows, time, rates?.parse ?? NO_CPU, 'CSV parse');
      return rows;
    },
    encode: (rows) => codec.encode(rows),
    decode(bytes, key) {
      const [rows, time] = cpuTime(() => codec.decode(bytes, key));
      charge(rows, time, rates?.decode ?? NO_CPU, 'shard decode');
      return rows;
    },
  };
}

function workerBreakdown(stats: FunctionStats, p: SimParams): Record<string, number> {
  const out: Record<string, number> = { total: stats.busySeconds, 'cold starts': stats.coldStarts * p.lambda.coldStart };
  for (const [key, seconds] of cpuCharged) if (key.startsWith('worker ')) out[key.slice(7)] = seconds;
  out['requests (waiting)'] = 2 * out.total - Object.values(out).reduce((s, v) => s + v, 0);
  return out;
}

/** ARI of the fitted responsibilities' argmax against the generator's clusters, on up to 20 000 lines. */
function ariOf(kernel: Kernel, doc: PosteriorDocument, manifest: Manifest, data: GeneratedCsv): number {
  const n = Math.min(20_000, data.rows);
  const stride = Math.floor(data.rows / n);
  const lines = Array.from({ length: n }, (_, i) => data.line(i * stride)).join('');
  const parsed = parseWith(manifest.plan, manifest.files[0], Buffer.from(lines, 'latin1'));
  const batch = toBatch(manifest.plan, manifest.standardization, parsed);
  const { spec, state } = modelOf(doc);
  const T = spec.T;
  const r = runLocalStep(kernel, paramsFor(spec, state), kernel.prepare(batch), { responsibilities: true }).responsibilities!;
  const fitted = Array.from({ length: n }, (_, row) => {
    let best = 0;
    for (let k = 1; k < T; k++) if (r[row * T + k] > r[row * T + best]) best = k;
    return best;
  });
  return adjustedRandIndex(fitted, Array.from({ length: n }, (_, i) => data.label(i * stride)));
}

/** The data set's objects: `data.rowsPerFile` rows each, file f generated with seed 3 + f. */
export function generatedFiles(rows: number, p: SimParams): Map<string, GeneratedCsv> {
  const model = mixture(p.data.columns, p.data.clusters);
  const files = new Map<string, GeneratedCsv>();
  for (let f = 0, left = rows; left > 0; f++, left -= p.data.rowsPerFile) {
    files.set(`${keys.dataPrefix(SIM_DATASET)}part-${String(f).padStart(4, '0')}.csv`, new GeneratedCsv(model, Math.min(p.data.rowsPerFile, left), 3 + f));
  }
  return files;
}

export async function simulate(request: SimRequest): Promise<SimResult> {
  const p = request.params;
  const { rows, workers, runId = SIM_RUN } = request;
  const modelled = rows > p.data.realRows;
  const files = generatedFiles(rows, p);
  const first = [...files.values()][0];
  const config = parseConfig({ target: 'y', ...request.config });
  const kernel = await loadKernel('auto');

  // As the construct's workerScaling sets it for the handlers (functions/runtime.ts).
  const wakeWorkers = p.lambda.scaling === 'provisioned';

  // The planner's CPU: a dry run of the same planning here, without the clock (once per process
  // for these rows, data and config, whatever the worker count, which changes only the list of
  // shards: the first run is the cold one, as a new planner container is).
  const plannerKey = JSON.stringify([rows, p.data, config, p.lambda.announceShards]);
  let planner = measured.planner.get(plannerKey);
  if (!planner) {
    const dry = { store: new MemoryObjectStore(), dataStore: generatedStore(files, modelled), tasks: new MemoryQueue({ name: 'dry' }), updates: new MemoryQueue({ name: 'dry.fifo', fifo: true }) };
    // Split where the sample and the initialization start: each part is charged there, so the
    // wake and prefetch messages go out after the CPU that precedes them, not after all of it.
    const started = cpuNow();
    const marks: Partial<Record<'sample' | 'initialize', CpuTime>> = {};
    const dryCtx = { ...dry, announceShards: p.lambda.announceShards, wakeWorkers, onPhase: (phase: PlanPhase) => void ((phase.phase === 'sample' || phase.phase === 'initialize') && phase.done === 0 && (marks[phase.phase] ??= cpuSince(started))) };
    await planRun(dryCtx, { dataset: DATASET, config, workers, runId: 'dry' }, kernel);
    const all = cpuSince(started);
    const sample = marks.sample ?? NO_CPU;
    const initialize = marks.initialize ?? all;
    measured.planner.set(plannerKey, (planner = { start: sample, sample: cpuBetween(sample, initialize), initialize: cpuBetween(initialize, all) }));
  }
  const [startCpu, sampleCpu, initializeCpu] = [planner.start, planner.sample, planner.initialize].map((t) => lambdaSeconds(t, p.lambda.plannerMemoryMb, p.lambda.cpuSpeed));

  const clock = new VirtualClock();
  cpuCharged.clear();
  const counts = emptyCounts();
  const memory = new MemoryObjectStore();
  // A shard's binary copy holds its sample past realRows; it is charged as the whole shard.
  const chargedBytes = (key: string, body: Uint8Array | string) => {
    const bytes = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    if (!modelled || typeof body === 'string' || !/\/shards\/s\d+\.bin$/.test(key)) return bytes;
    return Math.round(bytes * decodeBinary<{ weight: number }>(body, key).header.weight);
  };
  const store = countingStore(timedStore(memory, clock, p, chargedBytes), counts, chargedBytes);
  const dataStore = countingStore(timedStore(generatedStore(files, modelled), clock, p), counts);
  const tasks = new SimQueue('sim-tasks', clock, p);
  const updates = new SimQueue('sim-updates.fifo', clock, p);
  // The report is rendered in this thread, its module loaded beforehand (reportModule). The
  // aggregator is charged what its container would do (measured.report): loading vega and the
  // warm-up on the planning message, then warm renders; without a planning message
  // (lambda.announceShards false), its first render is a cold one: loading vega and the warm-up's.
  const module = await reportModule();
  const aggregatorSeconds = (...times: (CpuTime | undefined)[]) => lambdaSeconds(summed(...times), p.lambda.aggregatorMemoryMb, p.lambda.cpuSpeed);
  let warmed = false;
  const chargeReport = (kind: 'figures' | 'rest' | 'render', time: CpuTime, what: string) => {
    measured.report[kind] ??= time;
    const { load, warmup } = measured.report;
    chargeCpu(warmed ? aggregatorSeconds(measured.report[kind]) : aggregatorSeconds(load, warmup), what);
    warmed = true;
  };
  const report = {
    async warm() {
      if (!warmed) chargeCpu(aggregatorSeconds(measured.report.load, measured.report.warmup), 'report warm-up');
      warmed = true;
    },
    async figures(...args: Parameters<typeof module.renderFigures>) {
      const [figures, time] = cpuTime(() => module.renderFigures(...args));
      chargeReport('figures', time, 'report ahead');
      return figures;
    },
    async render(...args: Parameters<typeof module.renderReport>) {
      const [html, time] = cpuTime(() => module.renderReport(...args));
      chargeReport(args[4] ? 'rest' : 'render', time, 'report');
      return html;
    },
  };
  // When each planner phase began; its CPU is charged there, once.
  const phaseStarts: Partial<Record<PlanPhase['phase'], number>> = {};
  const ctx = {
    store,
    dataStore,
    tasks: countingQueue(tasks, counts),
    updates: countingQueue(updates, counts),
    log: silentLog,
    workerConcurrency: workers,
    report,
    announceShards: p.lambda.announceShards,
    wakeWorkers,
    onPhase: (phase: PlanPhase) => {
      if (phase.done !== 0 || phaseStarts[phase.phase] !== undefined) return;
      phaseStarts[phase.phase] = clock.now;
      if (phase.phase === 'sample') chargeCpu(sampleCpu, 'sample');
      if (phase.phase === 'initialize') chargeCpu(initializeCpu, 'initialize');
    },
  };
  const workerSeconds = (t: CpuTime) => lambdaSeconds(t, p.lambda.workerMemoryMb, p.lambda.cpuSpeed);
  const sampleWeight = modelled ? Math.max(1, shardRowsFor(config, rows, workers) / p.data.sampleRowsPerShard) : 1;
  const shape = JSON.stringify(p.data);
  const codec = timedCodec(modelled ? surrogateCodec(first, p.data.sampleRowsPerShard) : csvShardCodec, workerSeconds, first, shape);
  const workerCtx = { ...ctx, kernel: timedKernel(kernel, workerSeconds, shape) };

  let manifest: Manifest | undefined;
  let ended = false;
  let plannerSeconds = 0;
  const roundEnds: number[] = [];
  const workerInvocations: InvocationRecord[] = [];
  const aggregatorInvocations: InvocationRecord[] = [];
  // A container's kernel, loading from its first delivery on (params.ts lambda.kernelLoad).
  const loadingKernel = <K>(loaded: K): Promise<K> => clock.sleep(p.lambda.kernelLoad).then(() => loaded);
  void invocation.run({ fn: 'planner', cpu: startCpu }, async () => {
    // A refit's planner is invoked once (by the schedule, an upload or submit): a cold container.
    await clock.sleep(p.lambda.coldStart);
    manifest = await planRun(ctx, { dataset: DATASET, config, workers, runId }, loadingKernel(kernel));
    await payCpu(clock);
    plannerSeconds = clock.now;
  });
  const workerMapping = eventSourceMapping({
    fn: 'worker',
    clock,
    queue: tasks,
    params: p,
    counts,
    memoryMb: p.lambda.workerMemoryMb,
    concurrency: workers,
    batchSize: 1,
    enabledAt: workerRamp(p),
    // A container's shard cache holds what a real one would: its budget shrinks by the sample's weight.
    container: () => ({
      cache: new WorkerCache(Math.round((p.lambda.workerMemoryMb * MIB * 0.375) / sampleWeight), codec),
      kernel: loadingKernel(workerCtx.kernel),
    }),
    onInvocation: (record) => workerInvocations.push(record),
    handle: ([message], container) => handleTaskDelivery({ ...workerCtx, kernel: container.kernel }, message, 3, container.cache),
  });
  const aggregatorMapping = eventSourceMapping({
    fn: 'aggregator',
    clock,
    queue: updates,
    params: p,
    counts,
    memoryMb: p.lambda.aggregatorMemoryMb,
    concurrency: 1,
    batchSize: 10,
    cpuPerInvocation: p.lambda.aggregatorCpu,
    container: () => undefined,
    onInvocation: (record) => aggregatorInvocations.push(record),
    handle: async (messages) => {
      const delivered = messages.map((m) => parseMessage(UpdateMessage, m.body, updates.name));
      const done = await handleUpdates(ctx, delivered);
      if (delivered.some((u) => u.kind === 'round-complete')) roundEnds.push(clock.now);
      if (done.length) ended = true;
    },
  });
  await clock.run(() => ended);
  const wallSeconds = clock.now;
  workerMapping.stop();
  aggregatorMapping.stop();

  const stateObject = await memory.get(keys.state(DATASET, runId));
  const state = JSON.parse(Buffer.from(stateObject.body).toString('utf8')) as RunState;
  if (state.status !== 'done') throw new Error(`the simulated run ended ${state.status}: ${state.failure}`);
  const doc = (await readJson<PosteriorDocument & { trace: { phase: string }[] }>(memory, state.resultKey!)).value;
  const functions: FunctionStats[] = [workerMapping.stats, aggregatorMapping.stats, { invocations: 1, coldStarts: 1, busySeconds: plannerSeconds, memoryMb: p.lambda.plannerMemoryMb }];
  const lambdaGbSeconds = functions.reduce((s, f) => s + (f.busySeconds * f.memoryMb) / 1024, 0);
  const invocations = functions.reduce((s, f) => s + f.invocations, 0);
  const lambdaCost = lambdaGbSeconds * p.prices.lambdaGbSecond + invocations * p.prices.lambdaRequest;
  const s3Cost = counts.s3Get * p.prices.s3Get + (counts.s3Put + counts.s3List) * p.prices.s3Put;
  const sqsCost = counts.sqs * p.prices.sqsStandardRequest;
  const svi = doc.trace.filter((t) => t.phase === 'svi').length;
  // The aggregator's time on rounds: its busy time but for its container's cold start and its report work (warm-up, figures ahead, the rest at the end).
  const reportSeconds = cpuCharged.get('aggregator report') ?? 0;
  const reportAheadSeconds = cpuCharged.get('aggregator report ahead') ?? 0;
  const reportWarmupSeconds = cpuCharged.get('aggregator report warm-up') ?? 0;
  const roundSeconds = aggregatorMapping.stats.busySeconds - aggregatorMapping.stats.coldStarts * p.lambda.coldStart - reportSeconds - reportAheadSeconds - reportWarmupSeconds;
  const timeline = timelineOf(p, { sampling: phaseStarts.sample ?? null, initializing: phaseStarts.initialize ?? null, end: plannerSeconds }, workerInvocations, aggregatorInvocations);
  // Tasks (not prefetches, wakes or refits) are the rounds' worker invocations.
  const tasksDone = timeline.rounds.reduce((n, r) => n + r.tasks.invocations, 0);
  return {
    rows,
    workers,
    modelled,
    wallSeconds,
    plannerSeconds,
    plannerCpu: { sample: startCpu + sampleCpu, initialize: initializeCpu },
    costUsd: lambdaCost + s3Cost + sqsCost,
    cost: { lambda: lambdaCost, s3: s3Cost, sqs: sqsCost },
    lambdaGbSeconds,
    requests: { s3Get: counts.s3Get, s3Put: counts.s3Put, s3List: counts.s3List, sqs: counts.sqs },
    bytes: { read: counts.bytesRead, written: counts.bytesWritten },
    shards: manifest!.shards.length,
    shardRows: Math.round(rows / manifest!.shards.length),
    tasks: tasksDone,
    rounds: { svi, batch: doc.trace.length - svi },
    roundEnds,
    prefetchSeconds: timeline.prefetch?.end ?? null,
    aggregator: {
      invocations: aggregatorMapping.stats.invocations,
      busySeconds: aggregatorMapping.stats.busySeconds,
      utilization: aggregatorMapping.stats.busySeconds / wallSeconds,
      reportSeconds,
      reportAheadSeconds,
      reportWarmupSeconds,
    },
    aggregatorResultsPerSecond: tasksDone / roundSeconds,
    workerColdStarts: workerMapping.stats.coldStarts,
    workerSeconds: workerBreakdown(workerMapping.stats, p),
    stateBytes: stateObject.body.length,
    elbo: modelled ? null : doc.elbo,
    ari: modelled ? null : ariOf(kernel, doc, manifest!, first),
    converged: doc.converged,
    timeline,
  };
}

const kindOf = (m: QueueMessage) => JSON.parse(m.body) as { kind: string; round?: { id: string }; roundId?: string };

/** The phases of a run from its invocations (the simulator's `--timeline`). */
function timelineOf(p: SimParams, planner: Omit<Timeline['planner'], 'coldStartEnd'>, workers: InvocationRecord[], aggregator: InvocationRecord[]): Timeline {
  const span = (records: InvocationRecord[]): Span | null => {
    if (!records.length) return null;
    const durations = records.map((r) => r.end - r.ready).sort((a, b) => a - b);
    const cpu: Record<string, number> = {};
    for (const r of records) for (const [kind, seconds] of Object.entries(r.cpu)) cpu[kind] = (cpu[kind] ?? 0) + seconds / records.length;
    return {
      start: Math.min(...records.map((r) => r.ready)),
      end: Math.max(...records.map((r) => r.end)),
      invocations: records.length,
      medianSeconds: durations[durations.length >> 1],
      cpu,
    };
  };
  const warm = workers.filter((r) => r.ready > r.start).map((r) => r.ready);
  const tasksByRound = new Map<string, InvocationRecord[]>();
  for (const r of workers) {
    const message = kindOf(r.messages[0]);
    if (message.kind === 'task') tasksByRound.set(message.round!.id, [...(tasksByRound.get(message.round!.id) ?? []), r]);
  }
  const completing = (id: string) => aggregator.find((r) => r.messages.some((m) => kindOf(m).roundId === id));
  return {
    planner: { coldStartEnd: p.lambda.coldStart, ...planner },
    workersWarm: warm.length ? { first: Math.min(...warm), last: Math.max(...warm) } : null,
    prefetch: span(workers.filter((r) => kindOf(r.messages[0]).kind === 'prefetch')),
    rounds: [...tasksByRound].map(([id, records]) => {
      const ended = completing(id);
      return { id, tasks: span(records)!, aggregator: ended ? { start: ended.ready, end: ended.end } : null };
    }),
  };
}
