/**
 * `predict` over a local CSV file, streamed: chunks of whole records (lib/data/records.ts) are
 * scored inline or by worker threads and written out in file order, with a bounded number of
 * chunks in flight, so memory does not grow with the file.
 */
import type { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Delimiter } from '../config.js';
import { MAX_SKIPPED_DETAILS, readHeader, type SkippedRow } from '../data/csv.js';
import { DataError } from '../data/errors.js';
import { readRecordChunks } from '../data/records.js';
import { loadKernel, type BackendName } from '../kernel/backend.js';
import { checkPredictOptions, Predictor, readPosterior } from '../model/predict.js';
import type { PosteriorDocument } from '../model/summary.js';
import { FolderObjectStore } from '../pipeline/folder-store.js';
import { chunkScorer, predictionColumns, type ScoredChunk } from './score-chunk.js';
import { defaultThreads, localDataKey, spawnModuleWorker } from './threads.js';
import path from 'node:path';
import { inputSizes } from './input-files.js';

/**
 * 2 MiB: measured against 4 MiB on 1M and 5M rows with the main thread scoring, the same CPU time
 * and ~50 MiB less peak RSS (each chunk's arrays and output are garbage until the next GC).
 */
const CHUNK_BYTES = 2 * 1024 * 1024;

export interface PredictFileOptions {
  /** posterior.json's text and its name for errors. */
  posterior: { text: string; file: string };
  csv: string;
  out: Writable;
  /** Worker threads; 0 scores inline. @default one per core, inline for files under 16 MiB */
  workers?: number;
  backend?: BackendName | 'auto';
  /** Bytes of data per chunk (tests use small ones). @default 2 MiB */
  chunkBytes?: number;
  /** Adds prediction_lo, prediction_hi: the central interval of this probability (gaussian). */
  interval?: number;
  /** cluster and cluster_probability from p(z | x, y) on rows with the target (else p(z | x)). */
  cluster?: boolean;
}

export interface PredictFileResult {
  rows: number;
  skipped: number;
  skippedExamples: SkippedRow[];
  threads: number;
  /**
   * When the file has the target column: Σ ln p(y | x) and the rows whose target was read; the
   * rows whose target was there but unreadable, with the first few by file, line and column.
   */
  logDensity?: { column: string; total: number; rows: number; unreadable: number; unreadableExamples: SkippedRow[] };
}

/** What a predict thread starts from. */
export interface PredictWorkerInit {
  posterior: { text: string; file: string };
  layout: { file: string; header: string[]; delimiter: Delimiter };
  backend: BackendName | 'auto';
  interval?: number;
  cluster?: boolean;
  /** The file has the model's target column. */
  target: boolean;
}

export interface ScoreRequest {
  id: number;
  bytes: Uint8Array;
}

export type ScoreReply = { id: number } & (ScoredChunk | { error: string });

/** The chunk scorer of a thread (or of the main thread when inline). */
export async function scorerFor(init: PredictWorkerInit) {
  const doc = readPosterior(init.posterior.text, init.posterior.file);
  const kernel = await loadKernel(init.backend);
  const predictor = new Predictor(doc, kernel.backend === 'reference' ? undefined : kernel.backend, {
    ...(init.interval === undefined ? {} : { interval: init.interval }),
    logDensity: init.target,
    clusterGivenY: init.target && init.cluster === true,
  });
  return chunkScorer(doc, init.layout, predictor, { interval: init.interval, target: init.target });
}

/** Scores `csv` with the posterior and writes the header and every record with its cells to `out`. */
export async function predictFile(options: PredictFileOptions): Promise<PredictFileResult> {
  const doc: PosteriorDocument = readPosterior(options.posterior.text, options.posterior.file);
  checkPredictOptions(doc, { interval: options.interval }, options.posterior.file);
  await inputSizes([options.csv]);
  const absolute = path.resolve(options.csv);
  const store = new FolderObjectStore('/', { durable: false, etags: 'stat' });
  const header = await readHeader(store, localDataKey(absolute), options.csv);
  const { plan } = doc.state;
  for (const column of new Set(plan.select.map((s) => s.column).filter((c) => c !== plan.target)))
    if (!header.columns.includes(column)) throw new DataError(`missing column "${column}" the model was fitted with`, { file: options.csv, line: 1 });
  // The id column names rows in fit's assignments; predict echoes every input field, so it needs none.
  const init: PredictWorkerInit = {
    posterior: options.posterior,
    layout: { file: options.csv, header: header.columns, delimiter: header.delimiter },
    backend: options.backend ?? 'auto',
    ...(options.interval === undefined ? {} : { interval: options.interval }),
    cluster: options.cluster === true,
    target: header.columns.includes(doc.state.plan.target),
  };
  // A file that already holds predict's columns (its own output, scored again) would get a second
  // set under the same names, which no reader can tell apart.
  const added = predictionColumns(doc, { interval: options.interval, target: init.target });
  const clash = added.filter((c) => header.columns.includes(c));
  if (clash.length > 0)
    throw new DataError(
      `already has ${clash.length === 1 ? 'a column' : 'columns'} ${clash.map((c) => `"${c}"`).join(', ')} that predict adds (is it predict's output?); score the file without ${clash.length === 1 ? 'it' : 'them'}`,
      { file: options.csv, line: 1 },
    );
  const dataBytes = header.size - header.dataStart;
  const chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
  const threads = Math.min(
    options.workers ?? defaultThreads(dataBytes),
    Math.ceil(dataBytes / chunkBytes),
  );

  // With two or more threads the main thread is one of them: it scores a chunk whenever every
  // worker already has two, so one fewer thread (and its copy of TensorFlow.js) is started. The
  // scorers start before anything is written: a kernel that cannot load leaves no output behind.
  const scorer = threads > 1 ? await startThreads(threads - 1, init, await scorerFor(init)) : threads === 1 ? await startThreads(1, init) : await inlineScorer(init);
  const total: PredictFileResult = { rows: 0, skipped: 0, skippedExamples: [], threads, ...(init.target ? { logDensity: { column: doc.state.plan.target, total: 0, rows: 0, unreadable: 0, unreadableExamples: [] } } : {}) };
  const inFlight: Promise<ScoredChunk>[] = [];
  let firstLine = 2; // of the next chunk; line 1 is the header
  const finish = async (scored: ScoredChunk) => {
    total.rows += scored.rows;
    total.skipped += scored.skipped;
    const cite = (from: SkippedRow[], into: SkippedRow[]) => {
      for (const example of from.slice(0, MAX_SKIPPED_DETAILS - into.length)) into.push({ ...example, line: firstLine + example.line });
    };
    if (total.logDensity) {
      total.logDensity.total += scored.logDensity;
      total.logDensity.rows += scored.densityRows;
      total.logDensity.unreadable += scored.unreadableTargets;
      cite(scored.unreadableTargetExamples, total.logDensity.unreadableExamples);
    }
    cite(scored.skippedExamples, total.skippedExamples);
    firstLine += scored.lines;
    await write(options.out, scored.out);
  };
  try {
    const headerLine = Buffer.from(await store.getRange(localDataKey(absolute), 0, header.dataStart)).toString('utf8');
    await write(options.out, `${headerLine.replace(/^\uFEFF/, '').replace(/\r?\n$/, '')}${added.map((c) => header.delimiter + c).join('')}\n`);
    for await (const chunk of readRecordChunks(absolute, { dataStart: header.dataStart, header: header.columns, delimiter: header.delimiter, chunkBytes })) {
      inFlight.push(scorer.score(chunk));
      // Four chunks per thread: the main thread, scoring too, may run that far ahead of a worker's
      // oldest chunk before it must wait for it (with two it idled a third of the time).
      if (inFlight.length >= Math.max(2, 4 * threads)) await finish(await inFlight.shift()!);
    }
    while (inFlight.length) await finish(await inFlight.shift()!);
  } finally {
    await Promise.allSettled(inFlight);
    await scorer.stop();
  }
  return total;
}

async function write(out: Writable, data: string | Uint8Array): Promise<void> {
  if (!out.write(data)) await once(out, 'drain');
}

interface Scorer {
  score(bytes: Uint8Array): Promise<ScoredChunk>;
  stop(): Promise<void>;
}

async function inlineScorer(init: PredictWorkerInit): Promise<Scorer> {
  const score = await scorerFor(init);
  return { score: async (bytes) => score(bytes), stop: async () => {} };
}

/**
 * Threads taking chunks from one queue; each request resolves with its own chunk's result. A worker
 * holds up to two chunks (the second waits in its port, so it never idles while the main thread is
 * busy); with `inline`, a chunk that finds every worker full (or still starting) is scored here at
 * once, so the main thread does not wait the ~0.5 s a worker takes to load TensorFlow.js.
 */
async function startThreads(count: number, init: PredictWorkerInit, inline?: (bytes: Uint8Array) => ScoredChunk): Promise<Scorer> {
  const waiting = new Map<number, { resolve: (s: ScoredChunk) => void; reject: (e: Error) => void }>();
  const queue: ScoreRequest[] = [];
  const idle: Worker[] = [];
  let nextId = 0;
  let failure: Error | undefined;
  const dispatch = () => {
    while (idle.length && queue.length) {
      const request = queue.shift()!;
      idle.pop()!.postMessage(request, [request.bytes.buffer as ArrayBuffer]);
    }
  };
  const fail = (error: Error) => {
    failure = error;
    for (const pending of waiting.values()) pending.reject(error);
    waiting.clear();
  };
  const starting = Promise.all(
    Array.from({ length: count }, async () => {
      // A chunk's garbage is a few MB; a small heap makes V8 collect it rather than grow (RSS stays flat).
      const worker = await spawnModuleWorker(new URL(`./predict-worker${path.extname(new URL(import.meta.url).pathname)}`, import.meta.url), init, {
        maxOldGenerationSizeMb: 64,
        maxYoungGenerationSizeMb: 8,
      });
      await new Promise<void>((resolve, reject) => {
        worker.on('message', (m: ScoreReply | { ready: true } | { failed: string }) => {
          if ('ready' in m) return resolve();
          if ('failed' in m) {
            const error = new Error(m.failed);
            reject(error);
            return fail(error);
          }
          const pending = waiting.get(m.id)!;
          waiting.delete(m.id);
          if ('error' in m) pending.reject(new Error(m.error));
          else pending.resolve(m);
          idle.push(worker);
          dispatch();
        });
        worker.on('error', (error) => {
          reject(error);
          fail(error);
        });
      });
      idle.push(worker, worker); // two slots
      dispatch();
      return worker;
    }),
  );
  starting.catch(fail);
  if (!inline) await starting;
  return {
    score(bytes) {
      if (failure) return Promise.reject(failure);
      if (inline && idle.length === 0) {
        try {
          return Promise.resolve(inline(bytes));
        } catch (error) {
          return Promise.reject(error as Error);
        }
      }
      // The chunk's own buffer moves to the thread: copy only when it is a view into a larger one.
      const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
      const id = nextId++;
      const result = new Promise<ScoredChunk>((resolve, reject) => waiting.set(id, { resolve, reject }));
      queue.push({ id, bytes: own });
      dispatch();
      return result;
    },
    async stop() {
      const workers = await starting.catch(() => [] as Worker[]);
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
