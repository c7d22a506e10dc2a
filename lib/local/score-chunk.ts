/**
 * `predict` on one chunk of whole records: parse, standardize, score, and write every record back
 * with its cells appended. The same function runs inline and in predict worker threads, so both
 * give the same bytes.
 */
import type { Delimiter } from '../config.js';
import { parseRows, type SkippedRow } from '../data/csv.js';
import { toBatch, type ColumnPlan } from '../data/dataset.js';
import { Scratch } from '../data/scratch.js';
import { familyOf } from '../model/families/index.js';
import type { Predictor } from '../model/predict.js';
import type { PosteriorDocument } from '../model/summary.js';
import { writeInteger, writePrecision } from './digits.js';

/** What a scorer needs besides the predictor: the file's layout and the columns to read. */
export interface ScoreLayout {
  file: string;
  header: string[];
  delimiter: Delimiter;
}

export interface ScoredChunk {
  /** The chunk's non-blank records, each followed by its cells and '\n'. */
  out: Uint8Array;
  rows: number;
  /** Physical lines in the chunk. */
  lines: number;
  skipped: number;
  /** Lines counted from 0 at the chunk's start: the caller adds the chunk's first line. */
  skippedExamples: SkippedRow[];
  /** With the target column: Σ ln p(y | x) over the rows whose y was read, and their number. */
  logDensity: number;
  densityRows: number;
  /** Target values present but unreadable (scored without log_density); lines as skippedExamples'. */
  unreadableTargets: number;
  unreadableTargetExamples: SkippedRow[];
}

/** What predict writes besides the mean: `interval` adds prediction_lo/hi; `target` (the file has the target column) adds log_density. */
export interface PredictColumnsOptions {
  interval?: number;
  target?: boolean;
}

/** A categorical target's class labels (the multinomial family's), or null. */
function classLabels(doc: PosteriorDocument): string[] | null {
  return familyOf(doc.family).predictive.classes ? doc.state.plan.select[doc.state.plan.ySlot].levels! : null;
}

/** Names of the columns predict appends, for the header line. */
export function predictionColumns(doc: PosteriorDocument, options: PredictColumnsOptions = {}): string[] {
  return [
    'cluster',
    'cluster_probability',
    ...familyOf(doc.family).predictive.columns,
    ...(classLabels(doc) ?? []).map((label) => `probability_${label}`),
    ...(options.interval === undefined ? [] : ['prediction_lo', 'prediction_hi']),
    ...(options.target ? ['log_density'] : []),
  ];
}

/**
 * The fitted columns, read as they were fitted (numbers, or categories with the fit's levels: a
 * level the fit did not see skips the row, naming it), and with `target` also the target column as
 * optional (a row without it is still scored; new rows need none).
 */
export function predictPlan(doc: PosteriorDocument, target = false): ColumnPlan {
  const fitted = doc.state.plan;
  const columnOf = (slot: number) => fitted.select[slot].column;
  const columns = [...new Set([...fitted.xSlot, ...(fitted.xcSlot ?? []), ...fitted.rSlot].map(columnOf))];
  const fittedSelect = (column: string) => fitted.select.find((s) => s.column === column)!;
  const select: ColumnPlan['select'] = columns.map((column) => {
    const { kind, levels, marginal } = fittedSelect(column);
    // A missing value the fit marginalized is marginalized here too (docs/model.md §18).
    return { column, ...(kind === 'category' ? { kind, levels } : { kind: 'number' as const }), ...(marginal ? { marginal } : {}) };
  });
  // The target is never a clustering or regression column (lib/data/dataset.ts planColumns).
  // A categorical target (multinomial) keeps the fitted classes: a label the fit did not see skips the row, naming it.
  const classes = fitted.select[fitted.ySlot].levels;
  if (target) select.push({ column: fitted.target, kind: familyOf(doc.family).target.kind, optional: true, ...(classes ? { levels: classes } : {}) });
  // The offset of η (a log-link family's exposure) is needed to predict, like a regression column.
  const offset = fitted.offset && { ...fitted.offset, slot: select.push({ column: fitted.offset.column, kind: fitted.offset.log ? 'positive' : 'number' }) - 1 };
  return {
    ...fitted,
    select,
    xSlot: fitted.xSlot.map((s) => columns.indexOf(columnOf(s))),
    rSlot: fitted.rSlot.map((s) => columns.indexOf(columnOf(s))),
    ...(fitted.xcSlot ? { xcSlot: fitted.xcSlot.map((s) => columns.indexOf(columnOf(s))) } : {}),
    ySlot: target ? columns.length : -1,
    ...(offset ? { offset } : {}),
  };
}

/**
 * Bytes per row the cells may need at most: each cell is a delimiter and at most 16 characters
 * (toPrecision(8) of a large or tiny value is like "-1.2345678e+300"; "-Infinity", an int32).
 */
const CELL_BYTES = 17;

/**
 * A function scoring chunks of `layout`'s file with `predictor`, which must have been made with
 * the options `options` asks for (a logDensity predictor when `options.target`, lib/local/predict-file.ts).
 * Numbers are written as toPrecision would (lib/local/digits.ts): the cluster's probability and
 * the sd to 6 significant digits, the prediction, the interval and the log density to 8.
 */
export function chunkScorer(doc: PosteriorDocument, layout: ScoreLayout, predictor: Predictor, options: PredictColumnsOptions = {}) {
  const plan = predictPlan(doc, options.target);
  const withSd = familyOf(doc.family).predictive.sd !== undefined;
  const columns = predictionColumns(doc, options).length;
  const interval = options.interval !== undefined;
  const target = options.target === true;
  const delimiter = layout.delimiter.charCodeAt(0);
  const LF = 10;
  // A class label is written as its text, quoted (RFC 4180) when it holds the delimiter, a quote or a line break.
  const labels = classLabels(doc)?.map((label) => {
    const quoted = label.includes(layout.delimiter) || /["\r\n]/.test(label) ? `"${label.replace(/"/g, '""')}"` : label;
    return Buffer.from(quoted);
  });
  const rowBytes = columns * CELL_BYTES + 1 + Math.max(0, ...(labels ?? []).map((l) => l.length));
  const arrays = new Scratch(); // one chunk at a time: parsed rows and batch reuse their arrays
  return (bytes: Uint8Array): ScoredChunk => {
    const parsed = parseRows(bytes, { file: layout.file, header: layout.header, select: plan.select, delimiter: layout.delimiter, records: true, arrays });
    const batch = toBatch(plan, doc.state.standardization, parsed, arrays);
    const result = predictor.predict(batch);
    const records = parsed.records!;
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const { cluster, clusterProbability, mean, sd, lo, hi, logDensity, probabilities } = result;
    // allocUnsafeSlow: never a slice of the shared pool, so a thread can transfer it.
    let out = Buffer.allocUnsafeSlow(bytes.length + records.count * 56 + 64);
    let at = 0;
    let densitySum = 0;
    let densityRows = 0;
    /** Room for `echo` more bytes of the record and its cells. */
    const reserve = (echo: number) => {
      if (at + echo + rowBytes <= out.length) return;
      const grown = Buffer.allocUnsafeSlow(Math.max(out.length * 2, at + echo + rowBytes));
      grown.set(out.subarray(0, at));
      out = grown;
    };
    for (let i = 0; i < records.count; i++) {
      const start = records.start[i];
      const end = records.end[i];
      const row = records.row[i];
      if (row < 0 && unterminated(source, start, end)) {
        // A quote that never closes (the row is skipped, and named): echoed as is, it would swallow
        // every line after it in a CSV reader. Its text goes in the first field, quoted, the other
        // input fields empty, so the output keeps one line per record and its columns.
        const escaped = Buffer.from(`"${source.toString('utf8', start, end).replace(/"/g, '""')}"`);
        reserve(escaped.length + layout.header.length);
        at += escaped.copy(out, at);
        for (let c = 1; c < layout.header.length; c++) out[at++] = delimiter;
      } else {
        reserve(end - start);
        at += source.copy(out, at, start, end);
      }
      if (row < 0) {
        for (let c = 0; c < columns; c++) out[at++] = delimiter;
        out[at++] = LF;
        continue;
      }
      out[at++] = delimiter;
      at = writeInteger(out, at, cluster[row]);
      out[at++] = delimiter;
      const p = clusterProbability[row];
      // Most rows sit firmly in one cluster: what toPrecision(6) prints as 1.00000.
      at = p > 0.99999951 ? writeOne(out, at) : writePrecision(out, at, p, 6);
      out[at++] = delimiter;
      if (labels) {
        // The most probable class's label, then each class's probability.
        at += labels[mean[row]].copy(out, at);
        for (let c = 0; c < labels.length; c++) {
          out[at++] = delimiter;
          at = writePrecision(out, at, probabilities![row * labels.length + c], 6);
        }
      } else at = writePrecision(out, at, mean[row], 8);
      if (withSd) {
        out[at++] = delimiter;
        at = writePrecision(out, at, sd![row], 6);
      }
      if (interval) {
        out[at++] = delimiter;
        at = writePrecision(out, at, lo![row], 8);
        out[at++] = delimiter;
        at = writePrecision(out, at, hi![row], 8);
      }
      if (target) {
        out[at++] = delimiter;
        const l = logDensity![row];
        if (!Number.isNaN(l)) {
          at = writePrecision(out, at, l, 8);
          densitySum += l;
          densityRows++;
        }
      }
      out[at++] = LF;
    }
    return {
      out: out.subarray(0, at),
      rows: parsed.rows,
      lines: parsed.lineCount,
      skipped: parsed.skippedCount,
      skippedExamples: parsed.skipped,
      logDensity: densitySum,
      densityRows,
      unreadableTargets: parsed.unreadable.skippedCount,
      unreadableTargetExamples: parsed.unreadable.skipped,
    };
  };
}

/** Whether bytes [start, end) hold an odd number of quotes: a quoted field left open. */
function unterminated(bytes: Uint8Array, start: number, end: number): boolean {
  let quotes = 0;
  for (let i = start; i < end; i++) if (bytes[i] === 34) quotes++;
  return quotes % 2 === 1;
}

/** "1.00000". */
function writeOne(out: Uint8Array, at: number): number {
  out[at] = 49;
  out[at + 1] = 46;
  for (let i = 2; i < 7; i++) out[at + i] = 48;
  return at + 7;
}
