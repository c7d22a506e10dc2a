/**
 * From CSV objects to standardized batches: which columns play which role, the standardization
 * fixed for a run, the row sample the planner draws, and the conversion of parsed rows to a Batch.
 */
import type { ModelConfig } from '../config.js';
import type { Batch } from '../kernel/types.js';
import type { ObjectStore } from '../pipeline/ports.js';
import { parseRows, readHeader, readOwnedLines, resolveColumn, type ColumnKind, type ParsedRows } from './csv.js';
import { DataError } from './errors.js';

/** One CSV object of a dataset, as the planner found it. */
export interface DataFile {
  key: string;
  /** Name shown to the user (the path given on the command line, or the key). */
  name: string;
  size: number;
  etag: string;
  dataStart: number;
  columns: string[];
}

/** Which columns are used, and how each is converted. */
export interface ColumnPlan {
  target: string;
  /** Clustering columns x (empty in conditional-only mode). */
  x: string[];
  /** Regression columns r (the intercept is added after them). */
  r: string[];
  /** The distinct columns parsed from every row, in this order. */
  select: { column: string; kind: ColumnKind }[];
  /** Positions of x, r and y within select. */
  xSlot: number[];
  rSlot: number[];
  ySlot: number;
}

/** Column means and deviations from the sample, fixed for the run (y: 0 and 1 for bernoulli). */
export interface Standardization {
  xMean: number[];
  xSd: number[];
  rMean: number[];
  rSd: number[];
  yMean: number;
  ySd: number;
}

/** Open a data file: its header and size. A missing file becomes DataError "file not found". */
export async function openDataFile(store: ObjectStore, key: string, name = key): Promise<DataFile> {
  const info = await store.head(key);
  if (!info) throw new DataError('file not found', { file: name });
  const header = await readHeader(store, key, name);
  if (header.dataStart >= header.size) throw new DataError('no data rows after the header', { file: name, line: 2 });
  return { key, name, size: info.size, etag: info.etag, dataStart: header.dataStart, columns: header.columns };
}

/** Columns whose values in `bytes` are mostly numbers: the default clustering/regression columns. */
function numericColumns(file: DataFile, bytes: Uint8Array, exclude: string): string[] {
  return file.columns.filter((column) => {
    if (column === exclude || column === '') return false;
    const parsed = parseRows(bytes, { file: file.name, header: file.columns, select: [{ column, kind: 'number' }] });
    return parsed.rows > 0 && parsed.rows >= parsed.skippedCount;
  });
}

/**
 * Resolve the roles of the columns against the first file's header (every file must have them).
 * `firstBytes` are some whole data lines of the first file, used to tell numeric columns.
 */
export function planColumns(config: ModelConfig, files: DataFile[], firstBytes: Uint8Array): ColumnPlan {
  const first = files[0];
  for (const file of files) {
    resolveColumn(file.columns, config.target, file.name, 'target');
    for (const c of config.columns ?? []) resolveColumn(file.columns, c, file.name, 'clustering');
    for (const c of config.regressionColumns ?? []) resolveColumn(file.columns, c, file.name, 'regression');
  }
  const defaults = config.columns ?? numericColumns(first, firstBytes, config.target);
  if (defaults.length === 0 && !config.regressionColumns) {
    throw new DataError(`no numeric columns besides the target "${config.target}" to cluster or regress on`, {
      file: first.name,
    });
  }
  const x = config.covariateModel ? defaults : [];
  const r = config.regressionColumns ?? defaults;
  if (x.includes(config.target) || r.includes(config.target)) {
    throw new DataError(`the target "${config.target}" cannot also be a clustering or regression column`, { file: first.name });
  }
  const select: ColumnPlan['select'] = [];
  const slotOf = (column: string, kind: ColumnKind) => {
    let i = select.findIndex((s) => s.column === column);
    if (i < 0) i = select.push({ column, kind }) - 1;
    return i;
  };
  const xSlot = x.map((c) => slotOf(c, 'number'));
  const rSlot = r.map((c) => slotOf(c, 'number'));
  const ySlot = slotOf(config.target, config.family === 'bernoulli' ? 'binary' : 'number');
  return { target: config.target, x, r, select, xSlot, rSlot, ySlot };
}

/** Parse whole lines of `file` with the plan's columns. */
export function parseWith(plan: ColumnPlan, file: DataFile, bytes: Uint8Array, firstLine?: number): ParsedRows {
  return parseRows(bytes, { file: file.name, header: file.columns, select: plan.select, firstLine });
}

/** Mean and deviation (ddof 0) of each selected column over parsed rows. */
export function standardizationOf(plan: ColumnPlan, family: ModelConfig['family'], sample: ParsedRows, fileName: string): Standardization {
  const width = plan.select.length;
  const mean = new Float64Array(width);
  const sq = new Float64Array(width);
  const n = sample.rows;
  if (n < 2) throw new DataError(`too few usable rows to fit (found ${n})`, { file: fileName });
  for (let i = 0; i < n; i++) for (let j = 0; j < width; j++) mean[j] += sample.values[i * width + j] / n;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < width; j++) {
      const d = sample.values[i * width + j] - mean[j];
      sq[j] += (d * d) / n;
    }
  const sd = Array.from(sq, Math.sqrt);
  plan.select.forEach((s, j) => {
    if (!(sd[j] > 0) && !(j === plan.ySlot && family === 'bernoulli'))
      throw new DataError(`column "${s.column}" is constant in the sampled rows; drop it from the columns`, { file: fileName });
  });
  const pick = (slots: number[], v: ArrayLike<number>) => slots.map((s) => v[s]);
  const bernoulli = family === 'bernoulli';
  return {
    xMean: pick(plan.xSlot, mean),
    xSd: pick(plan.xSlot, sd),
    rMean: pick(plan.rSlot, mean),
    rSd: pick(plan.rSlot, sd),
    yMean: bernoulli ? 0 : mean[plan.ySlot],
    ySd: bernoulli ? 1 : sd[plan.ySlot],
  };
}

/** Standardized batch from parsed rows: x, u = [r; 1], y. */
export function toBatch(plan: ColumnPlan, std: Standardization, parsed: ParsedRows): Batch {
  const n = parsed.rows;
  const width = plan.select.length;
  const D = plan.x.length;
  const P = plan.r.length + 1;
  const x = new Float64Array(n * D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  const v = parsed.values;
  for (let i = 0; i < n; i++) {
    const row = i * width;
    for (let j = 0; j < D; j++) x[i * D + j] = (v[row + plan.xSlot[j]] - std.xMean[j]) / std.xSd[j];
    for (let j = 0; j < P - 1; j++) u[i * P + j] = (v[row + plan.rSlot[j]] - std.rMean[j]) / std.rSd[j];
    u[i * P + P - 1] = 1;
    y[i] = plan.ySlot < 0 ? 0 : (v[row + plan.ySlot] - std.yMean) / std.ySd; // no target when predicting
  }
  return { n, x, u, y };
}

/** Rows read for standardization and initialization, and what they tell about the whole data. */
export interface Sample {
  parsed: ParsedRows;
  /** Estimated rows in all files: data bytes / mean line length in the sample. */
  rowEstimate: number;
  /** Mean bytes per line in the sample. */
  bytesPerLine: number;
  /** The files were read whole, so skipped rows carry their line in the file (else an index in a window). */
  wholeFiles: boolean;
}

/** Concatenate parsed row sets (same select list). */
function concatParsed(parts: ParsedRows[]): ParsedRows {
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  const values = new Float64Array(parts.reduce((s, p) => s + p.values.length, 0));
  let offset = 0;
  for (const p of parts) {
    values.set(p.values, offset);
    offset += p.values.length;
  }
  return {
    rows,
    values,
    lineCount: parts.reduce((s, p) => s + p.lineCount, 0),
    rowLine: new Int32Array(0),
    skippedCount: parts.reduce((s, p) => s + p.skippedCount, 0),
    skipped: parts.flatMap((p) => p.skipped),
  };
}

/**
 * Read about `targetRows` rows spread over all files: `chunks` byte windows at evenly spaced
 * offsets of the concatenated data, each cut to whole lines. Small data is read whole.
 */
export async function readSample(
  store: ObjectStore,
  files: DataFile[],
  plan: ColumnPlan,
  firstBytes: Uint8Array,
  targetRows: number,
  chunks = 32,
): Promise<Sample> {
  const probe = parseWith(plan, files[0], firstBytes);
  const bytesPerLine = probe.lineCount > 0 ? Math.max(1, firstBytes.length / probe.lineCount) : 64;
  const totalBytes = files.reduce((s, f) => s + (f.size - f.dataStart), 0);
  const wantedBytes = targetRows * bytesPerLine;
  const parts: ParsedRows[] = [];
  let sampledBytes = 0;
  if (wantedBytes >= totalBytes * 0.8) {
    for (const f of files) {
      const bytes = await readOwnedLines(store, f.key, f.dataStart, f.size, f.dataStart, { fileSize: f.size });
      sampledBytes += bytes.length;
      parts.push(parseWith(plan, f, bytes, 2)); // line 1 is the header
    }
  } else {
    const window = Math.ceil(wantedBytes / chunks);
    for (let c = 0; c < chunks; c++) {
      let offset = Math.floor((c * totalBytes) / chunks);
      const file = files.find((f) => {
        const length = f.size - f.dataStart;
        if (offset < length) return true;
        offset -= length;
        return false;
      })!;
      const start = file.dataStart + offset;
      const end = Math.min(file.size, start + window);
      const bytes = await readOwnedLines(store, file.key, start, end, file.dataStart, { fileSize: file.size });
      sampledBytes += bytes.length;
      parts.push(parseWith(plan, file, bytes));
    }
  }
  const parsed = concatParsed(parts);
  const perLine = parsed.lineCount > 0 ? sampledBytes / parsed.lineCount : bytesPerLine;
  return { parsed, rowEstimate: Math.max(1, Math.round(totalBytes / perLine)), bytesPerLine: perLine, wholeFiles: wantedBytes >= totalBytes * 0.8 };
}
