/**
 * `predict` on one chunk of whole records: parse, standardize, score, and write every record back
 * with its cells appended. The same function runs inline and in predict worker threads, so both
 * give the same bytes.
 */
import type { Delimiter } from '../config.js';
import { parseRows, type SkippedRow } from '../data/csv.js';
import { toBatch, type ColumnPlan } from '../data/dataset.js';
import { Scratch } from '../data/scratch.js';
import type { Predictor } from '../model/predict.js';
import type { PosteriorDocument } from '../model/summary.js';

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
}

/** Names of the columns predict appends, for the header line. */
export function predictionColumns(doc: PosteriorDocument): string[] {
  return doc.family === 'gaussian'
    ? ['cluster', 'cluster_probability', 'prediction', 'prediction_sd']
    : ['cluster', 'cluster_probability', 'probability'];
}

/** The fitted columns, read as numbers (no target: new rows need none). */
export function predictPlan(doc: PosteriorDocument): ColumnPlan {
  const fitted = doc.state.plan;
  const columns = [...new Set([...fitted.x, ...fitted.r])];
  const select = columns.map((column) => ({ column, kind: 'number' as const }));
  return { ...fitted, select, xSlot: fitted.x.map((c) => columns.indexOf(c)), rSlot: fitted.r.map((c) => columns.indexOf(c)), ySlot: -1 };
}

/** A function scoring chunks of `layout`'s file with `predictor`. */
export function chunkScorer(doc: PosteriorDocument, layout: ScoreLayout, predictor: Predictor) {
  const plan = predictPlan(doc);
  const gaussian = doc.family === 'gaussian';
  const d = layout.delimiter;
  const blank = d.repeat(gaussian ? 4 : 3) + '\n';
  const arrays = new Scratch(); // one chunk at a time: parsed rows and batch reuse their arrays
  return (bytes: Uint8Array): ScoredChunk => {
    const parsed = parseRows(bytes, { file: layout.file, header: layout.header, select: plan.select, delimiter: d, records: true, arrays });
    const result = predictor.predict(toBatch(plan, doc.state.standardization, parsed, arrays));
    const records = parsed.records!;
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // allocUnsafeSlow: never a slice of the shared pool, so a thread can transfer it.
    let out = Buffer.allocUnsafeSlow(bytes.length + records.count * 48 + 64);
    let at = 0;
    for (let i = 0; i < records.count; i++) {
      const row = records.row[i];
      let cells = blank;
      if (row >= 0) {
        const p = result.clusterProbability[row];
        // Most rows sit firmly in one cluster: skip toPrecision for what it would print as 1.00000.
        cells = `${d}${result.cluster[row]}${d}${p > 0.99999951 ? '1.00000' : p.toPrecision(6)}${d}${result.mean[row].toPrecision(8)}`;
        cells += gaussian ? `${d}${result.sd![row].toPrecision(6)}\n` : '\n';
      }
      const length = records.end[i] - records.start[i];
      if (at + length + cells.length > out.length) {
        const grown = Buffer.allocUnsafeSlow(Math.max(out.length * 2, at + length + cells.length));
        out.copy(grown, 0, 0, at);
        out = grown;
      }
      source.copy(out, at, records.start[i], records.end[i]);
      at += length;
      at += out.write(cells, at, 'latin1'); // digits, signs, "Infinity" and the ASCII delimiter
    }
    return { out: out.subarray(0, at), rows: parsed.rows, lines: parsed.lineCount, skipped: parsed.skippedCount, skippedExamples: parsed.skipped };
  };
}
