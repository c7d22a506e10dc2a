/**
 * The library: `fit` and `predict` on CSV files or rows in memory, with typed results.
 *
 *   import { fit, predict } from 'clusterwise';
 *   const { posterior } = await fit([{ x: 1, y: 2 }, ...], { target: 'y' });
 *   const scored = await predict(posterior, [{ x: 1.5 }]);
 *
 * `fit` runs the same local pipeline as `clusterwise fit` (lib/local/runner.ts): rows in memory are
 * written to a temporary CSV first, so every path through the model is the one the CLI takes.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { ConfigError, parseConfig, type ModelConfigInput } from './config.js';
import { parseHeader, parseRows, type SelectedColumn } from './data/csv.js';
import { DataError, fileNotFound } from './data/errors.js';
import { BACKENDS, type BackendName } from './kernel/backend.js';
import { inputSizes } from './local/input-files.js';
import { lockOutput } from './local/out-lock.js';
import { fitLocal } from './local/runner.js';
import { MAX_THREADS } from './local/threads.js';
import { checkPredictOptions, Predictor, readPosterior } from './model/predict.js';
import type { Progress } from './pipeline/run.js';
import { batchOfRows, type Row } from './rows.js';
import { asDocument, PosteriorSchema, type Posterior } from './schemas.js';

export type { Row } from './rows.js';
export type { Posterior } from './schemas.js';

/** Rows as arrays of values under named columns. */
export interface Table {
  readonly columns: readonly string[];
  readonly rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>;
}

/**
 * What `fit` and `predict` read: a CSV path, several CSV paths (fit), records (an array, any
 * iterable or async iterable of `{column: value}`), or a Table of arrays.
 */
export type Data = string | readonly string[] | Iterable<Row> | AsyncIterable<Row> | Table;

export interface FitOptions extends Omit<ModelConfigInput, 'target'> {
  /** The response column. */
  readonly target: string;
  /**
   * Keep posterior.json, report.html (and assignments.csv) here; one fit at a time per folder
   * (OutputLockedError otherwise, as for `clusterwise fit --out`). @default a temporary folder, removed
   */
  readonly outDir?: string;
  /** Worker threads, 0 (this thread) to MAX_THREADS (2 × the cores). @default one per core from 16 MiB of data, else 0 */
  readonly workers?: number;
  /** Kernel backend. @default "auto" */
  readonly backend?: BackendName | 'auto';
  /** Called after every applied update (phase, shards done, ELBO). */
  readonly onProgress?: (progress: Progress) => void;
}

export interface FitResult {
  /** posterior.json as an object (lib/schemas.ts PosteriorSchema). */
  posterior: Posterior;
  /** report.html, the page itself. */
  reportHtml: string;
  /** The kernel that ran, e.g. "tfjs-wasm". */
  kernel: string;
  /** Where the files are, when `outDir` was given. */
  files?: { posterior: string; report: string; assignments?: string };
}

const isTable = (data: unknown): data is Table =>
  typeof data === 'object' && data !== null && 'columns' in data && 'rows' in data && Array.isArray((data as Table).columns);

const isPaths = (data: Data): data is string | readonly string[] =>
  typeof data === 'string' || (Array.isArray(data) && data.length > 0 && data.every((d) => typeof d === 'string'));

/** A CSV field: quoted when it holds a delimiter, a quote or a line break (RFC 4180). */
function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Records or a Table as [columns, rows of values], the columns of records from the first one. */
async function* tableOf(data: Iterable<Row> | AsyncIterable<Row> | Table): AsyncGenerator<readonly unknown[]> {
  if (isTable(data)) {
    yield data.columns;
    for await (const row of data.rows) yield row;
    return;
  }
  let columns: string[] | undefined;
  for await (const record of data as AsyncIterable<Row>) {
    if (!columns) {
      columns = Object.keys(record);
      yield columns;
    }
    yield columns.map((c) => record[c]);
  }
  if (!columns) throw new DataError('no rows to fit', { file: 'rows' });
}

/** Writes rows in memory to a CSV file. */
async function writeCsv(file: string, data: Iterable<Row> | AsyncIterable<Row> | Table): Promise<void> {
  const out = createWriteStream(file);
  try {
    for await (const values of tableOf(data)) {
      if (!out.write(values.map(csvField).join(',') + '\n')) await once(out, 'drain');
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
}

/**
 * Fits a mixture of regressions to CSV files or rows in memory. The `delimiter` setting is for CSV
 * files: rows in memory are written to the temporary CSV, and read back, with commas.
 */
export async function fit(data: Data, options: FitOptions): Promise<FitResult> {
  const { outDir, workers, backend, onProgress, ...settings } = options;
  const config = parseConfig(isPaths(data) ? settings : { ...settings, delimiter: ',' }, 'fit options');
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0 && workers <= MAX_THREADS))
    throw new ConfigError(`fit options: workers: must be a whole number from 0 to ${MAX_THREADS} (2 × the cores here), got ${JSON.stringify(workers)}`);
  if (backend !== undefined && backend !== 'auto' && !BACKENDS.includes(backend))
    throw new ConfigError(`fit options: backend: must be auto, ${BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`);
  const release = outDir === undefined ? undefined : await lockOutput(outDir);
  const scratch = await mkdtemp(path.join(tmpdir(), 'clusterwise-'));
  try {
    let files: string[];
    if (isPaths(data)) files = typeof data === 'string' ? [data] : [...data];
    else {
      files = [path.join(scratch, 'rows.csv')];
      await writeCsv(files[0], data);
    }
    const result = await fitLocal({ files, config, outDir: outDir ?? path.join(scratch, 'out'), workers, backend, onProgress });
    return {
      posterior: PosteriorSchema.parse(result.posterior),
      reportHtml: await readFile(result.reportPath, 'utf8'),
      kernel: result.kernel,
      ...(outDir ? { files: { posterior: result.posteriorPath, report: result.reportPath, assignments: result.assignmentsPath } } : {}),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
    await release?.();
  }
}

export interface Predictions {
  /** Input rows scored: each a row of the input with every value the model needs. */
  rows: number;
  /** Input rows left out (a needed value missing or not a number); their entries are NaN / −1. */
  skipped: number;
  /** Per input row: the most probable cluster (position in posterior.components), −1 when skipped. */
  cluster: Int32Array;
  /** Its probability p(z | x). */
  clusterProbability: Float64Array;
  /** The family's predictive mean of the target (bernoulli: P(target = 1); multinomial: the most probable class's index among the sorted labels). */
  prediction: Float64Array;
  /** A class-label target (multinomial): the most probable class's label per input row, null when skipped. */
  predictedClass?: (string | null)[];
  /** A class-label target: p(target = label | x) per input row, by label (NaN when skipped). */
  classProbabilities?: Record<string, Float64Array>;
  /** Its predictive standard deviation, for a family that gives one (gaussian). */
  predictionSd?: Float64Array;
  /** With `interval`: the central interval of the mixture predictive (gaussian; docs/model.md §10). */
  predictionLo?: Float64Array;
  predictionHi?: Float64Array;
  /**
   * When the data hold the target column: ln p(y | x) of each row's target in data units under the
   * mixture predictive, NaN where the target is missing or unreadable or the row skipped; as
   * `clusterwise predict`'s log_density column.
   */
  logDensity?: Float64Array;
}

export interface PredictOptions {
  /** A probability in (0, 1): adds predictionLo/Hi, the central interval of the predictive distribution (gaussian). */
  interval?: number;
  /**
   * cluster and clusterProbability from p(z | x, y) on rows whose target is known (flexmix's
   * clusters(newdata)); elsewhere, and without it, from p(z | x). As `predict --cluster`.
   */
  cluster?: boolean;
}

/**
 * Reads posterior.json (or takes the object) and checks it as `clusterwise predict` does
 * (model/predict.ts readPosterior): its schema, and that its parts agree with each other, so an
 * edited or damaged posterior is an error naming the file, never a different prediction.
 */
async function posteriorOf(source: Posterior | string): Promise<Posterior> {
  const file = typeof source === 'string' ? source : 'posterior';
  const text =
    typeof source === 'string'
      ? await readFile(source, 'utf8').catch((error: unknown) => {
          throw (error as NodeJS.ErrnoException).code === 'ENOENT' ? fileNotFound(source, error) : error;
        })
      : JSON.stringify(source);
  readPosterior(text, file);
  return PosteriorSchema.parse(typeof source === 'string' ? JSON.parse(text) : source);
}

/** The rows of a CSV file as records of the columns the model needs. */
async function recordsOfCsv(file: string, posterior: Posterior): Promise<Row[]> {
  await inputSizes([file]);
  const bytes = new Uint8Array(await readFile(file));
  const header = parseHeader(bytes, file);
  const plan = posterior.state.plan;
  const needed = plan.select.filter((s) => s.column !== plan.target);
  for (const { column } of needed) if (!header.columns.includes(column)) throw new DataError(`missing column "${column}" the model was fitted with`, { file, line: 1 });
  // The target too when the file has it, for the log density: read leniently (optional), as predict's CLI does.
  if (header.columns.includes(plan.target)) needed.push({ ...plan.select[plan.ySlot], optional: true });
  // Numbers as numbers; a category as its text (batchOfRows names a level the model does not know).
  // A missing value the fit marginalized reads as NaN (docs/model.md §18).
  const select = needed.map(({ column, kind, marginal, optional }): SelectedColumn => ({
    column,
    // The target keeps its kind (a 0/1 or true/false flag, a count): unreadable, it is NaN (optional).
    ...(kind === 'category' ? { kind, levels: [] } : { kind: optional ? kind : ('number' as const) }),
    ...(marginal ? { marginal } : {}),
    ...(optional ? { optional } : {}),
  }));
  const parsed = parseRows(bytes.subarray(header.dataStart), { file, header: header.columns, select, firstLine: 2, collectLevels: true });
  const value = (i: number, j: number) => {
    const v = parsed.values[i * needed.length + j];
    const levels = select[j].levels;
    return levels && !Number.isNaN(v) ? levels[v] : v;
  };
  return Array.from({ length: parsed.rows }, (_, i) => Object.fromEntries(needed.map((s, j) => [s.column, value(i, j)])));
}

/** Scores rows with a fitted posterior (the object or the path of posterior.json). */
export async function predict(posterior: Posterior | string, data: Data, options: PredictOptions = {}): Promise<Predictions> {
  const doc = await posteriorOf(posterior);
  checkPredictOptions(asDocument(doc), options, typeof posterior === 'string' ? posterior : 'posterior');
  let rows: Row[];
  if (isPaths(data)) {
    if (typeof data !== 'string') throw new DataError('predict reads one CSV file at a time', { file: data.join(', ') });
    rows = await recordsOfCsv(data, doc);
  } else if (isTable(data)) {
    rows = [];
    for await (const values of data.rows) rows.push(Object.fromEntries(data.columns.map((c, i) => [c, values[i]])));
  } else {
    rows = [];
    for await (const record of data as AsyncIterable<Row>) rows.push(record);
  }
  const target = doc.state.plan.target;
  // Whether the data hold the target column: a CSV's rows carry it when its header has it.
  const hasTarget = rows.some((row) => target in row);
  const { batch, used } = batchOfRows(doc, rows, { withTarget: hasTarget ? 'optional' : false });
  const result = new Predictor(asDocument(doc), undefined, {
    ...(options.interval === undefined ? {} : { interval: options.interval }),
    logDensity: hasTarget,
    clusterGivenY: hasTarget && options.cluster === true,
  }).predict(batch);
  const withSd = result.sd !== undefined;
  const nan = () => new Float64Array(rows.length).fill(NaN);
  const out: Predictions = {
    rows: used.length,
    skipped: rows.length - used.length,
    cluster: new Int32Array(rows.length).fill(-1),
    clusterProbability: new Float64Array(rows.length).fill(NaN),
    prediction: new Float64Array(rows.length).fill(NaN),
    ...(withSd ? { predictionSd: nan() } : {}),
    ...(result.lo ? { predictionLo: nan(), predictionHi: nan() } : {}),
    ...(result.logDensity ? { logDensity: nan() } : {}),
  };
  const labels = result.probabilities ? doc.state.plan.select[doc.state.plan.ySlot].levels! : null;
  if (labels) {
    out.predictedClass = new Array<string | null>(rows.length).fill(null);
    out.classProbabilities = Object.fromEntries(labels.map((label) => [label, nan()]));
  }
  used.forEach((index, n) => {
    out.cluster[index] = result.cluster[n];
    out.clusterProbability[index] = result.clusterProbability[n];
    out.prediction[index] = result.mean[n];
    if (withSd) out.predictionSd![index] = result.sd![n];
    if (result.lo) {
      out.predictionLo![index] = result.lo[n];
      out.predictionHi![index] = result.hi![n];
    }
    if (result.logDensity) out.logDensity![index] = result.logDensity[n];
    if (labels) {
      out.predictedClass![index] = labels[result.mean[n]];
      labels.forEach((label, c) => (out.classProbabilities![label][index] = result.probabilities![n * labels.length + c]));
    }
  });
  return out;
}
