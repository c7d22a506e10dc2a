/**
 * From CSV objects to standardized batches: which columns play which role, the standardization
 * fixed for a run, the row sample the planner draws, and the conversion of parsed rows to a Batch.
 */
import type { CovariateRelevance } from '../inference/relevance.js';
import type { Delimiter, ModelConfig } from '../config.js';
import { familyOf, integratesMissingInputs } from '../model/families/index.js';
import type { Batch } from '../kernel/types.js';
import type { ObjectInfo, ObjectStore } from '../pipeline/ports.js';
import pMap from 'p-map';
import {
  parseHeader,
  parseRows,
  readHeader,
  readOwnedLines,
  recordSkipped,
  resolveColumn,
  MAX_LEVELS,
  type ColumnKind,
  type ParsedRows,
  type SelectedColumn,
  type SkippedRow,
} from './csv.js';
import { DataError } from './errors.js';
import { noScratch, type ArraySource } from './scratch.js';
import { MISSING_CODE } from '../model/covariates/categorical.js';

/** One CSV object of a dataset, as the planner found it. */
export interface DataFile {
  key: string;
  /** Name shown to the user (the path given on the command line, or the key). */
  name: string;
  size: number;
  etag: string;
  dataStart: number;
  columns: string[];
  /** The field separator: detected from the header line, or the configured one (planColumns). */
  delimiter: Delimiter;
  /** The header line as read (so a configured delimiter can split it again). */
  headerLine: string;
}

/** Which columns are used, and how each is converted. */
export interface ColumnPlan {
  target: string;
  /** Numeric clustering columns x (empty in conditional-only mode). */
  x: string[];
  /**
   * Regression inputs r (the intercept is added after them): a numeric column's name, or for a
   * categorical column one treatment-coded input per level but the first, named `column=level`.
   */
  r: string[];
  /** The distinct columns parsed from every row, in this order; a category carries its levels, sorted (docs/model.md §16). */
  select: SelectedColumn[];
  /** Positions of x, r and y within select. */
  xSlot: number[];
  rSlot: number[];
  ySlot: number;
  /** Categorical clustering columns and their positions within select (absent: none). */
  xc?: string[];
  xcSlot?: number[];
  /** Per regression input: the level it indicates (1 when the value is that level, else 0), or −1 for a numeric column; absent when every input is numeric. */
  rLevel?: number[];
  /** The offset of η (config offset or exposure): its column, position in select, and whether its ln is taken (an exposure). */
  offset?: { column: string; slot: number; log: boolean };
  /**
   * Every candidate clustering column's relevance, when the planner chose x among them
   * (inference/relevance.ts); x then holds the relevant ones.
   */
  relevance?: CovariateRelevance[];
}

/** Column means and deviations from the sample, fixed for the run (y: 0 and 1 when the family does not standardize it). */
export interface Standardization {
  xMean: number[];
  xSd: number[];
  rMean: number[];
  rSd: number[];
  yMean: number;
  ySd: number;
}

/** Open a data file: its header and size. A missing file becomes DataError "file not found". */
export async function openDataFile(store: ObjectStore, key: string, name = key, known?: ObjectInfo): Promise<DataFile> {
  const header = await readHeader(store, key, name, undefined, known);
  if (header.dataStart >= header.size) throw new DataError('no data rows after the header', { file: name, line: 2 });
  const { size, etag, dataStart, columns, delimiter, headerLine } = header;
  return { key, name, size, etag, dataStart, columns, delimiter, headerLine };
}

/** Some whole data lines of a file: where a column's kind is told from. */
export interface LinesOf {
  file: DataFile;
  bytes: Uint8Array;
  /** The file's line number of the first line, when known. */
  firstLine?: number;
}

/**
 * How many of the column's values in `bytes` are numbers, and how many are something else (a
 * missing value is neither), with the first of those.
 */
function valueCounts({ file, bytes, firstLine }: LinesOf, column: string): { numbers: number; others: number; firstOther?: SkippedRow } {
  const select = [{ column, kind: 'number' as const, marginal: true }];
  const parsed = parseRows(bytes, { file: file.name, header: file.columns, select, delimiter: file.delimiter, ...(firstLine === undefined ? {} : { firstLine }) });
  let numbers = 0;
  for (let i = 0; i < parsed.rows; i++) if (!Number.isNaN(parsed.values[i])) numbers++;
  return { numbers, others: parsed.skippedCount, ...(parsed.skipped[0] ? { firstOther: parsed.skipped[0] } : {}) };
}

/** Why each candidate column is not numeric, for the error that none is: `a: "foo" on line 2: not a number`. */
function notNumericReasons(first: LinesOf, candidates: string[]): string {
  return candidates
    .map((column) => {
      const { numbers, others, firstOther } = valueCounts(first, column);
      if (numbers + others === 0) return `${column}: no values`;
      return firstOther && firstOther.column === column ? `${column}: "${firstOther.value}" on line ${firstOther.line}: ${firstOther.reason}` : `${column}: mostly not numbers`;
    })
    .join('; ');
}

/**
 * Whether the column's values are mostly numbers: those in the first file's first lines, or, when
 * it has no values there at all (a column empty in the first file), those in `more` (the sample's
 * windows over every file), so such a column is neither left out nor taken for a category.
 */
function isNumeric(first: LinesOf, column: string, more: readonly LinesOf[]): boolean {
  let { numbers, others } = valueCounts(first, column);
  if (numbers + others === 0) {
    for (const lines of more) {
      if (!lines.file.columns.includes(column)) continue;
      const counts = valueCounts(lines, column);
      numbers += counts.numbers;
      others += counts.others;
    }
  }
  return numbers > 0 && numbers >= others;
}

/**
 * A configured delimiter replaces the detected one: each file's header is split again with it.
 * Changes the files in place, so the manifest that lists them records what the workers parse with.
 */
function applyDelimiter(files: DataFile[], delimiter: Delimiter | undefined): void {
  if (delimiter === undefined) return;
  for (const file of files) {
    if (file.delimiter === delimiter) continue;
    const header = parseHeader(new TextEncoder().encode(file.headerLine), file.name, delimiter);
    file.columns = header.columns;
    file.delimiter = delimiter;
  }
}

/**
 * Resolve the roles of the columns against the first file's header (every file must have them).
 * `firstBytes` are some whole data lines of the first file, used to tell numeric columns; a column
 * with no values in them is told by `more` (the sample's windows), and without those it counts as
 * not numeric, so the planner plans again once it has read the sample.
 */
export function planColumns(config: ModelConfig, files: DataFile[], firstBytes: Uint8Array, more: readonly LinesOf[] = []): ColumnPlan {
  const first = files[0];
  const firstLines = { file: first, bytes: firstBytes, firstLine: 2 }; // the header is line 1
  const offsetColumn = config.offset ?? config.exposure;
  applyDelimiter(files, config.delimiter);
  for (const file of files) {
    resolveColumn(file.columns, config.target, file.name, 'target');
    if (config.id !== undefined) resolveColumn(file.columns, config.id, file.name, 'id');
    for (const c of config.columns ?? []) resolveColumn(file.columns, c, file.name, 'clustering');
    for (const c of config.regressionColumns ?? []) resolveColumn(file.columns, c, file.name, 'regression');
    if (offsetColumn !== undefined) resolveColumn(file.columns, offsetColumn, file.name, config.offset !== undefined ? 'offset' : 'exposure');
  }
  for (const c of config.categorical ?? []) resolveColumn(first.columns, c, first.name, 'categorical');
  const categorical = new Set(config.categorical ?? []);
  const excluded = [config.target, ...[config.id, offsetColumn].filter((c) => c !== undefined)];
  // By default: the numeric columns, and the listed categorical ones, in the header's order.
  const candidates = first.columns.filter((c) => !excluded.includes(c) && c !== '');
  const numeric = config.columns ? [] : candidates.filter((c) => isNumeric(firstLines, c, more));
  const defaults = config.columns ?? first.columns.filter((c) => categorical.has(c) || numeric.includes(c));
  if (defaults.length === 0 && !config.regressionColumns) {
    const why =
      candidates.length === 0
        ? 'the header names no other column'
        : `${notNumericReasons(firstLines, candidates)}; list text columns in "categorical" (--categorical) to use them as categories`;
    throw new DataError(`no numeric columns besides the target "${config.target}" to cluster or regress on (${why})`, { file: first.name });
  }
  const x = config.covariateModel ? defaults : [];
  const r = config.regressionColumns ?? defaults;
  if (x.includes(config.target) || r.includes(config.target)) {
    throw new DataError(`the target "${config.target}" cannot also be a clustering or regression column`, { file: first.name });
  }
  for (const column of config.sharedCoefficients ?? [])
    if (!r.includes(column))
      throw new DataError(`is listed in sharedCoefficients but is not a regression column (the regression columns: ${r.join(', ') || 'none'})`, { file: first.name, line: 1, column });
  // A clustering or regression column whose sampled values are not numbers is categorical.
  for (const c of new Set([...x, ...r])) if (!categorical.has(c) && !numeric.includes(c) && !isNumeric(firstLines, c, more)) categorical.add(c);
  const select: ColumnPlan['select'] = [];
  const slotOf = (column: string, kind: ColumnKind) => {
    let i = select.findIndex((s) => s.column === column);
    if (i < 0) i = select.push(kind === 'category' ? { column, kind, levels: [] } : { column, kind }) - 1;
    return i;
  };
  const kindOf = (c: string): ColumnKind => (categorical.has(c) ? 'category' : 'number');
  const xNumeric = x.filter((c) => !categorical.has(c));
  const xc = x.filter((c) => categorical.has(c));
  const xSlot = xNumeric.map((c) => slotOf(c, 'number'));
  const xcSlot = xc.map((c) => slotOf(c, 'category'));
  // Categorical regression columns stand as one input each until settleLevels expands them.
  const rSlot = r.map((c) => slotOf(c, kindOf(c)));
  const ySlot = slotOf(config.target, familyOf(config.family).target.kind);
  // Missing clustering values are marginalized (docs/model.md §18): a numeric one unless it is also a
  // regression input of a family that cannot integrate its response over it, a categorical one unless
  // it is also a regression input. Every other missing value skips its row.
  const marginalizesInputs = integratesMissingInputs(familyOf(config.family));
  for (const c of x) if (!r.includes(c) || (marginalizesInputs && !categorical.has(c))) select[slotOf(c, kindOf(c))].marginal = true;
  const offset =
    offsetColumn === undefined
      ? undefined
      : { column: offsetColumn, slot: slotOf(offsetColumn, config.exposure !== undefined ? 'positive' : 'number'), log: config.exposure !== undefined };
  return {
    target: config.target,
    x: xNumeric,
    r,
    select,
    xSlot,
    rSlot,
    ySlot,
    ...(offset ? { offset } : {}),
    ...(xc.length > 0 ? { xc, xcSlot } : {}),
    ...(r.some((c) => categorical.has(c)) ? { rLevel: r.map(() => -1) } : {}),
  };
}

/** Whether the plan reads categorical columns whose levels the sample has yet to settle. */
export function hasCategories(plan: ColumnPlan): boolean {
  return plan.select.some((s) => s.kind === 'category');
}

/** The categorical clustering columns and their levels (for the factor's summary). */
export function levelNames(plan: ColumnPlan): { column: string; levels: string[] }[] {
  return (plan.xcSlot ?? []).map((s) => ({ column: plan.select[s].column, levels: plan.select[s].levels! }));
}

/**
 * Fixes the categorical columns' levels from the planner's sample (parsed with collectLevels): each
 * column's levels sorted (the first is the regression's reference level), the sample's values
 * renumbered to match, and each categorical regression column expanded into its treatment-coded
 * inputs `column=level`. A column with one level, or more than MAX_LEVELS, is an error naming it.
 * Changes `plan` and `sample` in place.
 */
export function settleLevels(plan: ColumnPlan, sample: ParsedRows, fileName: string): void {
  const width = plan.select.length;
  plan.select.forEach((selected, slot) => {
    if (selected.kind !== 'category') return;
    const found = selected.levels ?? [];
    if (found.length < 2 || found.length > MAX_LEVELS)
      throw new DataError(
        found.length < 2
          ? `categorical column "${selected.column}" has ${found.length === 0 ? 'no value' : `the single level "${found[0]}"`} in the ${sample.rows} sampled rows; drop it from the columns`
          : `categorical column "${selected.column}" has more than ${MAX_LEVELS} distinct values in the sample: an id or free text, not a category; drop it or list it as the id`,
        { file: fileName, column: selected.column },
      );
    const sorted = [...found].sort();
    const renumber = found.map((level) => sorted.indexOf(level));
    for (let i = 0; i < sample.rows; i++) sample.values[i * width + slot] = renumber[sample.values[i * width + slot]];
    selected.levels = sorted;
  });
  if (!plan.rLevel) return;
  const r: string[] = [];
  const rSlot: number[] = [];
  const rLevel: number[] = [];
  plan.r.forEach((column, i) => {
    const slot = plan.rSlot[i];
    const levels = plan.select[slot].levels;
    if (!levels) {
      r.push(column);
      rSlot.push(slot);
      rLevel.push(-1);
      return;
    }
    for (let l = 1; l < levels.length; l++) {
      r.push(`${column}=${levels[l]}`);
      rSlot.push(slot);
      rLevel.push(l);
    }
  });
  Object.assign(plan, { r, rSlot, rLevel });
}

/** Parse whole lines of `file` with the plan's columns (`collectLevels`: the planner's sample, csv.ts ParseOptions). */
export function parseWith(plan: ColumnPlan, file: DataFile, bytes: Uint8Array, firstLine?: number, arrays?: ArraySource, collectLevels = false): ParsedRows {
  return parseRows(bytes, { file: file.name, header: file.columns, select: plan.select, firstLine, delimiter: file.delimiter, arrays, collectLevels });
}

/**
 * A column whose deviation is at most this share of its largest magnitude is constant: what is
 * left is rounding (a column of 5s shows a deviation of ~1e-15 · 5), and dividing by it would
 * blow the column up to ~1e14 standard deviations.
 */
export const CONSTANT_RELATIVE_SD = 1e-12;

/**
 * Mean and deviation (ddof 0) of each selected column over parsed rows, computed on the column
 * divided by its largest magnitude, so that values near 1e-300 do not underflow when squared nor
 * values near 1e150 overflow. A column constant in that relative sense (CONSTANT_RELATIVE_SD) is an
 * error naming it, the target included (unless the family does not standardize it, as bernoulli).
 */
export function standardizationOf(plan: ColumnPlan, family: ModelConfig['family'], sample: ParsedRows, fileName: string): Standardization {
  const width = plan.select.length;
  const n = sample.rows;
  if (n < 2) throw new DataError(`too few usable rows to fit (found ${n})`, { file: fileName });
  const v = sample.values;
  const standardizedTarget = familyOf(family).target.standardized;
  const mean = new Float64Array(width);
  const sd = new Float64Array(width);
  for (let j = 0; j < width; j++) {
    // Over the column's observed values: a marginalized column's missing ones are NaN (§18).
    let observed = 0;
    let scale = 0;
    for (let i = 0; i < n; i++) {
      const value = v[i * width + j];
      if (Number.isNaN(value)) continue;
      observed++;
      scale = Math.max(scale, Math.abs(value));
    }
    if (observed < 2) throw new DataError(`column "${plan.select[j].column}" has ${observed} value${observed === 1 ? '' : 's'} in the ${n} sampled rows; drop it from the columns`, { file: fileName });
    let m = 0;
    if (scale > 0) for (let i = 0; i < n; i++) if (!Number.isNaN(v[i * width + j])) m += v[i * width + j] / scale / observed;
    let sq = 0;
    if (scale > 0)
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(v[i * width + j])) continue;
        const d = v[i * width + j] / scale - m;
        sq += (d * d) / observed;
      }
    mean[j] = m * scale;
    sd[j] = Math.sqrt(sq) * scale;
    if ((j === plan.ySlot && !standardizedTarget) || j === plan.offset?.slot) continue; // not standardized
    if (plan.select[j].kind === 'category') continue; // level indices (settleLevels checked their number)
    if (!(Math.sqrt(sq) > CONSTANT_RELATIVE_SD)) {
      const role = j === plan.ySlot ? 'the target ' : '';
      const what = scale === 0 || v.subarray(0, n * width).every((x, k) => k % width !== j || x === v[j] || Number.isNaN(x)) ? `every value is ${v[j]}` : `its deviation is below ${CONSTANT_RELATIVE_SD} of its magnitude`;
      throw new DataError(
        `${role}column "${plan.select[j].column}" is constant in the ${n} sampled rows (${what}); ` +
          (role ? 'there is nothing to regress' : 'drop it from the columns'),
        { file: fileName },
      );
    }
  }
  const pick = (slots: number[], values: ArrayLike<number>) => slots.map((s) => values[s]);
  // A treatment-coded input stays 0/1 (its coefficient: the level's shift from the first level's).
  const pickR = (values: ArrayLike<number>, dummy: number) => plan.rSlot.map((s, i) => ((plan.rLevel?.[i] ?? -1) >= 0 ? dummy : values[s]));
  return {
    xMean: pick(plan.xSlot, mean),
    xSd: pick(plan.xSlot, sd),
    rMean: pickR(mean, 0),
    rSd: pickR(sd, 1),
    yMean: standardizedTarget ? mean[plan.ySlot] : 0,
    ySd: standardizedTarget ? sd[plan.ySlot] : 1,
  };
}

/**
 * Standardized values beyond ±1e12 are skipped: the local step runs in float32 (largest value
 * ~3.4e38), where the square of a difference of 1e19 already overflows; 1e12 leaves room for sums
 * over a chunk of rows and for the posterior precisions. A row this far out was not in the sample
 * (a sample of n rows has no value beyond √n deviations), so it is a wild value, not the data's scale.
 */
export const MAX_STANDARDIZED = 1e12;

/**
 * Moves rows with a standardized value beyond ±MAX_STANDARDIZED from the kept rows of `parsed` to
 * its skipped rows (with file, line, column and reason), in place, so that whoever counts
 * `parsed.rows` and `parsed.skippedCount` afterwards counts them as skipped.
 */
export function dropOverflowingRows(plan: ColumnPlan, std: Standardization, parsed: ParsedRows): void {
  const width = plan.select.length;
  const center = new Float64Array(width);
  const scale = new Float64Array(width).fill(1);
  const assign = (slots: number[], means: number[], sds: number[]) =>
    slots.forEach((s, j) => {
      center[s] = means[j];
      scale[s] = sds[j];
    });
  assign(plan.xSlot, std.xMean, std.xSd);
  assign(plan.rSlot, std.rMean, std.rSd); // a category's slot: centre 0, scale 1 (its level indices pass)
  if (plan.ySlot >= 0) assign([plan.ySlot], [std.yMean], [std.ySd]);
  // The same test without a division per value: lo ≤ v ≤ hi.
  const lo = center.map((c, j) => c - MAX_STANDARDIZED * scale[j]);
  const hi = center.map((c, j) => c + MAX_STANDARDIZED * scale[j]);
  // An optional column (predict's target) never costs a row its prediction: missing or wild, it is not checked.
  const optional = plan.select.map((s) => s.optional === true);
  // A marginalized column's missing value (NaN) is not a wild one (§18).
  const marginal = plan.select.map((s) => s.marginal === true);
  const v = parsed.values;
  const newRow = parsed.records ? new Int32Array(parsed.rows) : undefined;
  let kept = 0;
  for (let i = 0; i < parsed.rows; i++) {
    let bad = -1;
    for (let j = 0; j < width; j++) {
      const value = v[i * width + j];
      if (!(value >= lo[j] && value <= hi[j]) && !optional[j] && !(marginal[j] && Number.isNaN(value))) {
        bad = j;
        break;
      }
    }
    if (bad >= 0) {
      const line = parsed.rowLine[i] ?? 0;
      recordSkipped(parsed, {
        file: parsed.file,
        line: parsed.firstLine === undefined ? line : parsed.firstLine + line,
        column: plan.select[bad].column,
        value: String(v[i * width + bad]),
        reason: `more than ${MAX_STANDARDIZED} standard deviations from the sample mean`,
      });
      if (newRow) newRow[i] = -1;
      continue;
    }
    if (kept !== i) {
      v.copyWithin(kept * width, i * width, (i + 1) * width);
      parsed.rowLine[kept] = parsed.rowLine[i];
      if (parsed.texts) parsed.texts[kept] = parsed.texts[i];
    }
    if (newRow) newRow[i] = kept;
    kept++;
  }
  if (kept === parsed.rows) return;
  const records = parsed.records;
  if (records && newRow) for (let r = 0; r < records.count; r++) if (records.row[r] >= 0) records.row[r] = newRow[records.row[r]];
  parsed.rows = kept;
  parsed.values = v.subarray(0, kept * width);
  parsed.rowLine = parsed.rowLine.subarray(0, kept);
  if (parsed.texts) parsed.texts.length = kept;
}

/**
 * Standardized batch from parsed rows: x, u = [r; 1], y. Rows that would overflow the kernel are
 * first moved to the skipped rows of `parsed` (dropOverflowingRows), so read its counts after this.
 * With a Scratch as `arrays`, the batch is views into it (valid until its next use).
 */
export function toBatch(plan: ColumnPlan, std: Standardization, parsed: ParsedRows, arrays: ArraySource = noScratch): Batch {
  dropOverflowingRows(plan, std, parsed);
  const n = parsed.rows;
  const width = plan.select.length;
  const D = plan.x.length;
  const P = plan.r.length + 1;
  const x = arrays.float64('x', n * D);
  const u = arrays.float64('u', n * P);
  const y = arrays.float64('y', n);
  if (plan.ySlot < 0) y.fill(0);
  const v = parsed.values;
  const xSlot = Int32Array.from(plan.xSlot);
  const rSlot = Int32Array.from(plan.rSlot);
  const xMean = Float64Array.from(std.xMean);
  const xSd = Float64Array.from(std.xSd);
  const rMean = Float64Array.from(std.rMean);
  const rSd = Float64Array.from(std.rSd);
  for (let i = 0; i < n; i++) {
    const row = i * width;
    for (let j = 0; j < D; j++) x[i * D + j] = (v[row + xSlot[j]] - xMean[j]) / xSd[j];
    for (let j = 0; j < P - 1; j++) u[i * P + j] = (v[row + rSlot[j]] - rMean[j]) / rSd[j];
    u[i * P + P - 1] = 1;
  }
  if (plan.rLevel) {
    // Treatment coding: input j is 1 when the row's level is rLevel[j] (docs/model.md §16).
    const rLevel = plan.rLevel;
    for (let j = 0; j < P - 1; j++) {
      const level = rLevel[j];
      if (level < 0) continue;
      for (let i = 0; i < n; i++) u[i * P + j] = v[i * width + rSlot[j]] === level ? 1 : 0;
    }
  }
  const categories = plan.xcSlot && plan.xcSlot.length > 0 ? categoryCodes(plan, parsed, arrays) : undefined;
  if (plan.ySlot >= 0) for (let i = 0; i < n; i++) y[i] = (v[i * width + plan.ySlot] - std.yMean) / std.ySd; // none when predicting
  if (!plan.offset) return { n, x, u, y, ...(categories ? { categories } : {}) };
  // The offset enters η in its own units (an exposure through its logarithm).
  const offset = arrays.float64('offset', n);
  const { slot, log } = plan.offset;
  for (let i = 0; i < n; i++) offset[i] = log ? Math.log(v[i * width + slot]) : v[i * width + slot];
  return { n, x, u, y, offset, ...(categories ? { categories } : {}) };
}

/** Batch.categories: per row and categorical clustering column j, off_j + its level (off_j = Σ_{i<j} L_i). */
function categoryCodes(plan: ColumnPlan, parsed: ParsedRows, arrays: ArraySource): Int32Array {
  const slots = plan.xcSlot!;
  const J = slots.length;
  const width = plan.select.length;
  const n = parsed.rows;
  const codes = arrays.int32('categories', n * J);
  let offset = 0;
  slots.forEach((slot, j) => {
    for (let i = 0; i < n; i++) {
      const level = parsed.values[i * width + slot];
      codes[i * J + j] = Number.isNaN(level) ? MISSING_CODE : offset + level; // missing: its term dropped (§18)
    }
    offset += plan.select[slot].levels!.length;
  });
  return codes;
}

/**
 * Missing values by column among the kept rows of `parsed` (NaN in a marginalized column,
 * docs/model.md §18), or undefined when there are none: what a shard reports. Read after
 * toBatch, which may skip rows.
 */
export function missingByColumn(plan: ColumnPlan, parsed: ParsedRows): Record<string, number> | undefined {
  const width = plan.select.length;
  const counts: Record<string, number> = {};
  plan.select.forEach((s, j) => {
    if (!s.marginal) return;
    let count = 0;
    for (let i = 0; i < parsed.rows; i++) if (Number.isNaN(parsed.values[i * width + j])) count++;
    if (count > 0) counts[s.column] = count;
  });
  return Object.keys(counts).length > 0 ? counts : undefined;
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
  // Rows of several windows have no common line numbering; none is needed (the sample's own values
  // are never beyond √rows deviations, so dropOverflowingRows never cites one).
  return {
    file: parts[0]?.file ?? '',
    rows,
    values,
    lineCount: parts.reduce((s, p) => s + p.lineCount, 0),
    consumed: parts.reduce((s, p) => s + p.consumed, 0),
    rowLine: new Int32Array(rows),
    skippedCount: parts.reduce((s, p) => s + p.skippedCount, 0),
    skipped: parts.flatMap((p) => p.skipped),
    unreadable: { skippedCount: parts.reduce((s, p) => s + p.unreadable.skippedCount, 0), skipped: parts.flatMap((p) => p.unreadable.skipped) },
  };
}

/** Sample windows read at once. */
const SAMPLE_READS = 8;

/** Bytes of the files' data lines (after each header). */
const dataBytes = (files: DataFile[]) => files.reduce((s, f) => s + (f.size - f.dataStart), 0);

/** Lines in whole-line bytes: their line feeds. */
function lineCount(bytes: Uint8Array): number {
  let lines = 0;
  for (const byte of bytes) if (byte === 0x0a) lines++;
  return lines;
}

/**
 * Rows of the data estimated before the sample, from the first file's first window (`firstBytes`,
 * whole lines): the data's bytes over its bytes per line. Rough (one window), for decisions that
 * cannot wait for the sample's estimate (the planner's wake messages).
 */
export function rowsFromFirstWindow(files: DataFile[], firstBytes: Uint8Array): number {
  const lines = lineCount(firstBytes);
  const totalBytes = dataBytes(files);
  return lines > 0 ? Math.max(1, Math.round((totalBytes * lines) / firstBytes.length)) : 1;
}

/** The sample's byte windows, read but not parsed: whole lines of one file each. */
export interface SampleWindows {
  windows: (LinesOf & { firstLine: number | undefined })[];
  /** The files were read whole (small data). */
  whole: boolean;
  /** Bytes per line in the first file's first lines: what the windows were sized by. */
  bytesPerLine: number;
}

/**
 * Read about `targetRows` rows spread over all files: `chunks` byte windows at evenly spaced
 * offsets of the concatenated data, each cut to whole lines. Small data is read whole. Read apart
 * from parsing (parseSample), so that columns the first lines could not tell are told by these.
 */
export async function readSampleWindows(
  store: ObjectStore,
  files: DataFile[],
  firstBytes: Uint8Array,
  targetRows: number,
  chunks = 32,
): Promise<SampleWindows> {
  const lines = lineCount(firstBytes);
  const bytesPerLine = lines > 0 ? Math.max(1, firstBytes.length / lines) : 64;
  const totalBytes = dataBytes(files);
  const wantedBytes = targetRows * bytesPerLine;
  // The windows are read concurrently (SAMPLE_READS at a time): on S3 each is a request's latency,
  // and read one after another they were most of a large run's planning.
  const whole = wantedBytes >= totalBytes * 0.8;
  const window = Math.ceil(wantedBytes / chunks);
  const ranges = whole
    ? files.map((file) => ({ file, start: file.dataStart, end: file.size, firstLine: 2 as number | undefined })) // line 1 is the header
    : Array.from({ length: chunks }, (_, c) => {
        let offset = Math.floor((c * totalBytes) / chunks);
        const file = files.find((f) => {
          const length = f.size - f.dataStart;
          if (offset < length) return true;
          offset -= length;
          return false;
        })!;
        const start = file.dataStart + offset;
        return { file, start, end: Math.min(file.size, start + window), firstLine: undefined };
      });
  const windows = await pMap(
    ranges,
    async ({ file, start, end, firstLine }) => ({ file, firstLine, bytes: await readOwnedLines(store, file.key, start, end, file.dataStart, { fileSize: file.size }) }),
    { concurrency: SAMPLE_READS },
  );
  return { windows, whole, bytesPerLine };
}

/** The sample: the windows parsed by the plan, and the data's row count estimated from them. */
export function parseSample(plan: ColumnPlan, files: DataFile[], read: SampleWindows): Sample {
  const collect = hasCategories(plan);
  const parsed = concatParsed(read.windows.map(({ file, bytes, firstLine }) => parseWith(plan, file, bytes, firstLine, undefined, collect)));
  const sampledBytes = read.windows.reduce((n, w) => n + w.bytes.length, 0);
  const perLine = parsed.lineCount > 0 ? sampledBytes / parsed.lineCount : read.bytesPerLine;
  return { parsed, rowEstimate: Math.max(1, Math.round(dataBytes(files) / perLine)), bytesPerLine: perLine, wholeFiles: read.whole };
}
