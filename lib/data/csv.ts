/**
 * The streaming CSV data layer: read a file's header, cut the data into byte-range shards,
 * fetch the lines a shard owns, and parse the selected columns into a Float64Array.
 *
 * Record model (RFC 4180, with the usual leniencies). Fields are separated by the file's
 * delimiter (`,` by default; the header line tells `,` `;` tab and `|` apart) and may be quoted
 * with '"' ("" is an escaped quote). A record ends at a '\n' outside quotes (a '\r' before it is
 * dropped, so CRLF and LF files both work; old-Mac lone-CR files do not), so a quoted field may
 * hold line breaks. Line numbers in reports are physical lines: a record is cited by the line it
 * starts on.
 *
 * LIMITATION: byte-range shards are cut at '\n' without knowing whether that '\n' sits inside
 * quotes (that would need a scan from the start of the file). A record whose quoted line break
 * lies across a shard boundary is therefore read as two pieces, each skipped and reported; within
 * a shard (and in files smaller than one shard, and in `predict`, which reads a file from its
 * start) such records are read whole. Numeric data never has this problem.
 *
 * Sharding rule: a shard [start, end) owns exactly the data lines that START inside it, where a
 * line starts at `dataStart` or right after a '\n'. Reading every shard of a plan and parsing
 * the bytes yields every row exactly once, in file order.
 */
import type { ObjectInfo, ObjectStore } from '../pipeline/ports.js';
import { DELIMITERS, type Delimiter } from '../config.js';
import { asDataError, DataError, formatLocation } from './errors.js';
import { noScratch, type ArraySource } from './scratch.js';

export { DataError } from './errors.js';

const LF = 10;
const CR = 13;
const TAB = 9;
const SPACE = 32;
const QUOTE = 34;
const PLUS = 43;
const MINUS = 45;
const DOT = 46;
const ZERO = 48;
const UPPER_E = 69;
const LOWER_E = 101;

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder('utf-8');

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/** The parsed header: column names, the byte offset of the first data line, the field separator. */
export interface Header {
  columns: string[];
  /** Byte offset (in the file, BOM included) of the first data line. */
  dataStart: number;
  /** The delimiter given, or the one that splits the header line into the most fields (ties: the first of , ; tab |). */
  delimiter: Delimiter;
}

/** One field of a line as byte positions: content is [start, end), `quoted` if "" must be unescaped. */
interface FieldSpan {
  start: number;
  end: number;
  quoted: boolean;
}

/** Why a line could not be split into fields, and in which field (0-based). */
interface SplitFailure {
  reason: string;
  field: number;
}

/**
 * Parses the header line of a CSV file.
 *
 * `bytes` is the file or a prefix of it that holds the whole header line; when it has no '\n',
 * the header is taken to end at the end of `bytes` (a header-only file). Handles a UTF-8 BOM,
 * quoted names with "" escapes, CRLF or LF; unquoted names are trimmed.
 *
 * Without `delimiter`, the header line is split by each of , ; tab | and the one giving the most
 * fields wins (ties go to the earlier), which tells the usual CSV, European CSV and TSV apart.
 *
 * Throws DataError for an empty file, an empty header line, a malformed quoted name, or a
 * duplicated name. Empty names are allowed (pandas writes one for the index) but cannot be
 * selected.
 */
export function parseHeader(bytes: Uint8Array, file: string, delimiter?: Delimiter): Header {
  const begin = hasBom(bytes) ? 3 : 0;
  if (bytes.length === begin) throw new DataError('file is empty', { file });
  const newline = bytes.indexOf(LF, begin);
  const lineEnd = newline < 0 ? bytes.length : newline;
  const contentEnd = lineEnd > begin && bytes[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
  // UTF-16 text and binary data would otherwise give column names of raw bytes and an error about
  // a column the user cannot find in them.
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))
    throw new DataError('the file is UTF-16 text (it starts with a UTF-16 byte order mark); save it as UTF-8', { file, line: 1 });
  const nul = bytes.subarray(begin, lineEnd).indexOf(0);
  if (nul >= 0)
    throw new DataError(`byte ${nul + 1} of the header line is a NUL byte: this is not UTF-8 text (UTF-16 or binary data?); save it as UTF-8 CSV`, { file, line: 1 });
  // A lone CR ends lines only in old-Mac files, which are not read (a record ends at LF): without
  // this, such a file would be one header line holding every row.
  const loneCr = bytes.subarray(begin, contentEnd).indexOf(CR);
  if (loneCr >= 0 && !insideQuotes(bytes, begin, begin + loneCr))
    throw new DataError('a line ends with a lone carriage return (old-Mac line endings); convert the file to LF or CRLF line endings', { file, line: 1 });
  let best: { spans: FieldSpan[] | SplitFailure; delimiter: Delimiter } | undefined;
  for (const candidate of delimiter === undefined ? DELIMITERS : [delimiter]) {
    const spans = splitLine(bytes, begin, contentEnd, candidate.charCodeAt(0));
    // Another delimiter must give more fields than the first (a header that fails to split with
    // a comma, an unterminated quote say, is reported as such, not read as one ;-field), and must
    // not split a quoted name (`x,"note;a"` is two comma fields, not two ; fields with stray quotes).
    const fields = (x: FieldSpan[] | SplitFailure) => (Array.isArray(x) ? x.length : 1);
    const clean = (x: FieldSpan[] | SplitFailure) => Array.isArray(x) && x.every((span) => span.quoted || bytes.subarray(span.start, span.end).indexOf(QUOTE) < 0);
    const better = (a: FieldSpan[] | SplitFailure, b: FieldSpan[] | SplitFailure) => (clean(a) !== clean(b) ? clean(a) : fields(a) > fields(b));
    if (!best || (Array.isArray(spans) && better(spans, best.spans))) best = { spans, delimiter: candidate };
  }
  const { spans } = best!;
  if (!Array.isArray(spans)) {
    throw new DataError(`header: ${spans.reason}`, { file, line: 1 });
  }
  const columns = spans.map((span) => fieldText(bytes, span).trim());
  checkHeaderNames(columns, file);
  return { columns, dataStart: newline < 0 ? bytes.length : newline + 1, delimiter: best!.delimiter };
}

function hasBom(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
}

/** Rejects a header with no name at all and duplicated names (which would make lookups ambiguous). */
function checkHeaderNames(columns: string[], file: string): void {
  if (columns.every((name) => name === '')) {
    throw new DataError('header missing (the first line is empty)', { file, line: 1 });
  }
  const seen = new Map<string, number>();
  columns.forEach((name, index) => {
    if (name === '') return;
    const first = seen.get(name);
    if (first !== undefined) {
      throw new DataError(`duplicated column name "${name}" (columns ${first + 1} and ${index + 1})`, {
        file,
        line: 1,
      });
    }
    seen.set(name, index);
  });
}

/**
 * Reads and parses the header of `key`, fetching a prefix and growing it until the header
 * line is complete. A missing object becomes DataError "file not found".
 * Returns the header and the file size in bytes.
 */
export async function readHeader(
  store: ObjectStore,
  key: string,
  file: string = key,
  delimiter?: Delimiter,
  /** The object's size and ETag when a listing gave them (else a HEAD request asks). */
  known?: ObjectInfo,
): Promise<Header & { size: number; etag: string; headerLine: string }> {
  const info = known ?? (await store.head(key));
  if (info === undefined) throw new DataError('file not found', { file });
  for (let want = 64 * 1024; ; want *= 4) {
    const bytes = await store.getRange(key, 0, Math.min(want, info.size)).catch((error: unknown) => {
      throw asDataError(error, file);
    });
    // Parse only a whole header line: a cut one could show a truncated name as a duplicate.
    if (bytes.indexOf(LF) >= 0 || bytes.length >= info.size) {
      const header = parseHeader(bytes, file, delimiter);
      // The header line as text (a BOM dropped by the decoder), from the bytes already read.
      return { ...header, size: info.size, etag: info.etag, headerLine: new TextDecoder().decode(bytes.subarray(0, header.dataStart)) };
    }
  }
}

/**
 * The index of column `name` in `columns`; DataError when absent, e.g.
 * `data.csv: unknown target column "yy" (columns: a, b, c)`. `role` ("target", "covariate")
 * only sharpens the message.
 */
export function resolveColumn(columns: readonly string[], name: string, file: string, role?: string): number {
  const index = name === '' ? -1 : columns.indexOf(name);
  if (index < 0) {
    const what = role === undefined ? 'column' : `${role} column`;
    throw new DataError(`unknown ${what} "${name}" (columns: ${columns.join(', ')})`, { file });
  }
  return index;
}

// ---------------------------------------------------------------------------------------------
// Shards
// ---------------------------------------------------------------------------------------------

/** A byte range [start, end) of a file; it owns the data lines that start inside it. */
export interface ByteShard {
  start: number;
  end: number;
}

/**
 * Cuts [dataStart, fileSize) into contiguous, non-empty byte ranges of about `targetBytes`
 * each (sizes differ by at most one byte). No data: an empty array. A shard may own no line at
 * all (when a longer line covers it); readOwnedLines then returns no bytes.
 */
export function planByteShards(fileSize: number, dataStart: number, targetBytes: number): ByteShard[] {
  if (!(targetBytes > 0) || !Number.isFinite(targetBytes)) {
    throw new RangeError(`planByteShards: targetBytes must be a positive number, got ${targetBytes}`);
  }
  const length = fileSize - dataStart;
  if (length <= 0) return [];
  const count = Math.ceil(length / targetBytes);
  const shards: ByteShard[] = [];
  for (let i = 0; i < count; i++) {
    const start = dataStart + Math.floor((i * length) / count);
    const end = dataStart + Math.floor(((i + 1) * length) / count);
    shards.push({ start, end });
  }
  return shards;
}

/** Tuning for readOwnedLines. */
export interface ReadOwnedOptions {
  /**
   * Bytes fetched past `end` in the first request, so the last owned line is usually complete
   * after one request. @default 65536
   */
  overlap?: number;
  /** Object size when known (the planner knows it): requests are clamped to it. */
  fileSize?: number;
  /** Read only this version of the object (its ETag): PreconditionFailedError if it changed. */
  ifMatch?: string;
}

const DEFAULT_OVERLAP = 64 * 1024;

/**
 * Fetches the bytes of the lines shard [start, end) owns: the lines starting in
 * [max(start, dataStart), end). The result starts at a line start and ends after the '\n' of
 * the last owned line (or at the end of the file); empty when the shard owns no line.
 *
 * One range request normally: [start - 1, end + overlap) (the byte before `start` tells whether
 * `start` is a line start). When the last owned line runs past that, further requests of doubling
 * size follow until its '\n' (lines may be long). See the file comment for quoted newlines.
 */
export async function readOwnedLines(
  store: ObjectStore,
  key: string,
  start: number,
  end: number,
  dataStart: number,
  options: ReadOwnedOptions = {},
): Promise<Uint8Array> {
  const from = Math.max(start, dataStart);
  if (from >= end) return EMPTY;
  const reader = new RangeReader(store, key, options.fileSize, options.ifMatch);
  // Reading from the byte before `from` (unless `from` is the first data line) shows whether
  // a line starts at `from`.
  const origin = from === dataStart ? from : from - 1;
  const first = await reader.read(origin, end + (options.overlap ?? DEFAULT_OVERLAP));
  const firstLine = from === dataStart ? 0 : firstLineStart(first, end - 1 - origin);
  if (firstLine < 0) return EMPTY;
  return completeLastLine(reader, origin, first, firstLine, end - 1 - origin, options.overlap);
}

/**
 * Offset in `chunk` of the first byte after a '\n' among chunk[0 .. limit), -1 when none.
 * With chunk read from start - 1 and limit = end - 1 - origin, a '\n' at offset q < limit
 * starts a line at absolute position origin + q + 1 in [start, end): the shard's first line.
 */
function firstLineStart(chunk: Uint8Array, limit: number): number {
  const q = chunk.subarray(0, Math.min(limit, chunk.length)).indexOf(LF);
  return q < 0 ? -1 : q + 1;
}

/**
 * Returns bytes [firstLine, the first '\n' at or after `searchFrom`] of the data read from
 * `origin`, fetching more when `first` does not reach that '\n' (or the end of the file).
 * Chunks are joined once at the end, so a long last line costs no repeated copying.
 */
async function completeLastLine(
  reader: RangeReader,
  origin: number,
  first: Uint8Array,
  firstLine: number,
  searchFrom: number,
  overlap: number | undefined,
): Promise<Uint8Array> {
  const found = first.indexOf(LF, Math.max(searchFrom, firstLine));
  if (found >= 0) return first.subarray(firstLine, found + 1);
  if (reader.atEnd) return first.subarray(firstLine);
  const chunks = [first.subarray(firstLine)];
  let position = origin + first.length;
  for (let size = Math.max(overlap ?? DEFAULT_OVERLAP, 4096); !reader.atEnd; size *= 2) {
    const chunk = await reader.read(position, position + size);
    const q = chunk.indexOf(LF);
    if (q >= 0) {
      chunks.push(chunk.subarray(0, q + 1));
      break;
    }
    chunks.push(chunk);
    position += chunk.length;
  }
  return concat(chunks);
}

/** getRange with knowledge of where the file ends (from its size, or from a short read). */
class RangeReader {
  atEnd = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly key: string,
    private readonly size: number | undefined,
    private readonly ifMatch?: string,
  ) {}

  async read(start: number, end: number): Promise<Uint8Array> {
    const stop = this.size === undefined ? end : Math.min(end, this.size);
    if (stop <= start) {
      this.atEnd = true;
      return EMPTY;
    }
    const bytes = await this.store.getRange(this.key, start, stop, this.ifMatch === undefined ? undefined : { ifMatch: this.ifMatch });
    if (bytes.length < stop - start || stop === this.size) this.atEnd = true;
    return bytes;
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/**
 * How a selected column is converted: a finite decimal number, a 0/1 (true/false) flag, a count
 * (a whole number ≥ 0), a positive number (an exposure), or a category: the index of its text
 * (trimmed, unquoted) in the selected column's `levels`.
 */
export type ColumnKind = 'number' | 'binary' | 'count' | 'positive' | 'category';

/** A selected column. */
export interface SelectedColumn {
  column: string;
  kind: ColumnKind;
  /** A missing or unreadable value becomes NaN instead of skipping the row (predict's target). */
  optional?: boolean;
  /**
   * A missing value (empty, NA, N/A, NaN, null, None) becomes NaN instead of skipping the row: a
   * clustering covariate the model marginalizes (docs/model.md §18). Any other unreadable value
   * still skips it.
   */
  marginal?: boolean;
  /** For kind 'category': the known levels; a value is its index here. */
  levels?: string[];
}

/** A categorical column with more distinct values than this in the planner's sample is an error (an id or free text, not a category). */
export const MAX_LEVELS = 1000;

export interface ParseOptions {
  /** File name for reports. */
  file: string;
  /** Column names from parseHeader; every row must have this many fields. */
  header: readonly string[];
  /**
   * Columns to convert, in output order. Unknown names throw DataError. An `optional` column's
   * missing or unreadable value becomes NaN instead of skipping the row (predict's target).
   */
  select: readonly SelectedColumn[];
  /**
   * A category's text not among its column's `levels` is appended to them (the planner's sample
   * collects the levels this way) instead of skipping the row as an unknown level.
   */
  collectLevels?: boolean;
  /** 1-based file line of the first line of `bytes`; when absent, skipped rows carry 0-based indices. */
  firstLine?: number;
  /** The field separator (parseHeader's). @default ',' */
  delimiter?: Delimiter;
  /** Also keep this column's text (trimmed, unquoted) for every kept row, in `texts` (an id column). */
  text?: string;
  /** Also return every non-blank record's byte span and row, in `records` (predict writes lines back). */
  records?: boolean;
  /**
   * `bytes` is a prefix of the data that may end inside a record (a streaming reader's chunk):
   * stop before the first record not ended by a '\n' within `bytes`; `consumed` says where.
   */
  partial?: boolean;
  /** Where the result's arrays come from: a Scratch reuses them across calls (views valid until its next use). */
  arrays?: ArraySource;
}

/** A row that was left out, for the report. */
export interface SkippedRow {
  file: string;
  /** firstLine + index of the line in the bytes when firstLine is given, else the 0-based index. */
  line: number;
  /** The offending column; '' when the row as a whole is at fault (wrong field count). */
  column: string;
  /** The offending value (at most 100 characters); for a wrong field count, the line. */
  value: string;
  /** "missing value", "not a number", "not 0/1 or true/false", "expected N fields, found M", ... */
  reason: string;
}

/** Byte spans of the non-blank records (content without the line ending) and the row each became (−1: skipped). */
export interface RecordSpans {
  count: number;
  start: Int32Array;
  end: Int32Array;
  row: Int32Array;
}

export interface ParsedRows {
  /** The file and first line the rows were parsed with (for citing rows dropped later). */
  file: string;
  firstLine?: number;
  /** Rows kept. */
  rows: number;
  /** rows × select.length values, row-major, in select order (a view: its buffer may be longer). */
  values: Float64Array;
  /** Physical lines in the bytes (up to `consumed`), blank ones included. */
  lineCount: number;
  /** 0-based index within the bytes of the physical line each kept row starts on (length rows). */
  rowLine: Int32Array;
  /** Rows skipped as unusable (blank lines are not rows and not counted). */
  skippedCount: number;
  /** Details of the first MAX_SKIPPED_DETAILS skipped rows. */
  skipped: SkippedRow[];
  /**
   * Values of an `optional` column that were present but unreadable (not missing): their rows are
   * kept with NaN there, and counted here with the first MAX_SKIPPED_DETAILS described.
   */
  unreadable: { skippedCount: number; skipped: SkippedRow[] };
  /** Bytes parsed: all of them, unless `partial` stopped before an unfinished record. */
  consumed: number;
  /** With `text`: the column's text per kept row. */
  texts?: string[];
  /** With `records`: every non-blank record. */
  records?: RecordSpans;
}

/** Skipped rows described in detail; the rest are only counted. */
export const MAX_SKIPPED_DETAILS = 50;

/**
 * Values at or beyond ±1e150 are skipped: squares and products of two such values overflow
 * float64 (1e300 · a few thousand rows is near the 1.8e308 limit), which no sum over rows survives.
 */
export const MAX_MAGNITUDE = 1e150;

const KIND_NUMBER = 1;
const KIND_BINARY = 2;
const KIND_COUNT = 3;
const KIND_POSITIVE = 4;
const KIND_CATEGORY = 5;
const KINDS: Record<ColumnKind, number> = { number: KIND_NUMBER, binary: KIND_BINARY, count: KIND_COUNT, positive: KIND_POSITIVE, category: KIND_CATEGORY };

/** Per-call state shared by the fast scanner and the slow per-record path. */
interface ParseState {
  bytes: Uint8Array;
  /** Where records may be read up to: bytes.length, or after the last '\n' when partial. */
  end: number;
  options: ParseOptions;
  delimiter: number;
  fieldCount: number;
  /** For each header column, its index in `select`, or -1 when not converted. */
  slot: Int32Array;
  /** For each header column, KIND_NUMBER / KIND_BINARY, or 0. */
  kind: Uint8Array;
  /** For each header column, 1 when a bad value is NaN rather than a skipped row. */
  optional: Uint8Array;
  /** For each header column, 1 when a missing value is NaN rather than a skipped row (SelectedColumn.marginal). */
  marginal: Uint8Array;
  /** For each header column of kind category, its levels by text (else null). */
  levelIndex: (Map<string, number> | null)[];
  /** Header index of the `text` column, or -1. */
  textField: number;
  width: number;
  values: Float64Array;
  rowLine: Int32Array;
  rows: number;
  skippedCount: number;
  skipped: SkippedRow[];
  unreadable: { skippedCount: number; skipped: SkippedRow[] };
  texts?: string[];
  records?: RecordSpans;
  /** Physical line of the next record (0-based in the bytes). */
  line: number;
}

/**
 * Parses the data records in `bytes` (no header) and converts the selected columns.
 *
 * Rules: a blank (or whitespace-only) line is ignored; a row with the wrong number of fields, or
 * a selected value that is missing (empty, NA, N/A, NaN, null, None), not a finite decimal
 * number (exponent forms, leading +/-, surrounding blanks allowed), beyond ±MAX_MAGNITUDE, or for
 * `binary` not one of 0/1/true/false (any case; also 0.0, 1.0), or for `category` not one of the
 * column's levels (unless `collectLevels`) is skipped, counted and, for the first 50, described.
 * A quote that never closes makes its physical line a skipped row.
 * Never throws for a bad row; throws DataError for an unknown selected column.
 *
 * Why hand-written rather than a CSV library: on the benchmark data (11 numeric columns, ~6
 * significant digits; bench/csv.ts) measured in one process on Node 20, one shared core,
 * csv-parse/sync with `cast: false` ran at ~13 MB/s before any number conversion (~10 MB/s
 * with Number() on each field), this scanner at ~100–140 MB/s converting everything. The
 * fast path handles unquoted fields and plain decimals (≤ 15 significant digits, |exponent| ≤ 22,
 * exact by Clinger's fast path: one correctly rounded multiply or divide of exact doubles, so it
 * agrees bit for bit with Number()); any line it does not handle is re-parsed by the slow path,
 * which is the single source of truth for quoting and for the reason a row is skipped.
 */
export function parseRows(bytes: Uint8Array, options: ParseOptions): ParsedRows {
  const state = createState(bytes, options);
  const consumed = scanRows(state);
  const { rows, width } = state;
  return {
    file: options.file,
    ...(options.firstLine === undefined ? {} : { firstLine: options.firstLine }),
    rows,
    values: state.values.subarray(0, rows * width),
    lineCount: state.line,
    rowLine: state.rowLine.subarray(0, rows),
    skippedCount: state.skippedCount,
    skipped: state.skipped,
    unreadable: state.unreadable,
    consumed,
    ...(state.texts ? { texts: state.texts } : {}),
    ...(state.records ? { records: state.records } : {}),
  };
}

function createState(bytes: Uint8Array, options: ParseOptions): ParseState {
  const fieldCount = options.header.length;
  const slot = new Int32Array(fieldCount).fill(-1);
  const kind = new Uint8Array(fieldCount);
  const optional = new Uint8Array(fieldCount);
  const marginal = new Uint8Array(fieldCount);
  const levelIndex: (Map<string, number> | null)[] = new Array(fieldCount).fill(null);
  options.select.forEach((selected, index) => {
    const column = resolveColumn(options.header, selected.column, options.file);
    slot[column] = index;
    kind[column] = KINDS[selected.kind];
    optional[column] = selected.optional ? 1 : 0;
    marginal[column] = selected.marginal ? 1 : 0;
    if (selected.kind === 'category') levelIndex[column] = new Map((selected.levels ?? []).map((level, i) => [level, i]));
  });
  const textField = options.text === undefined ? -1 : resolveColumn(options.header, options.text, options.file);
  const end = options.partial ? bytes.lastIndexOf(LF) + 1 : bytes.length;
  const width = options.select.length;
  const arrays = options.arrays ?? noScratch;
  // Sized by the line count (a native memchr pass), an upper bound on the rows.
  const lines = countLines(bytes.subarray(0, end));
  return {
    bytes,
    end,
    options,
    delimiter: (options.delimiter ?? ',').charCodeAt(0),
    fieldCount,
    slot,
    kind,
    optional,
    marginal,
    levelIndex,
    textField,
    width,
    values: arrays.float64('values', lines * width),
    rowLine: arrays.int32('rowLine', lines),
    rows: 0,
    skippedCount: 0,
    skipped: [],
    unreadable: { skippedCount: 0, skipped: [] },
    ...(textField >= 0 ? { texts: [] } : {}),
    ...(options.records
      ? { records: { count: 0, start: arrays.int32('recordStart', lines), end: arrays.int32('recordEnd', lines), row: arrays.int32('recordRow', lines) } }
      : {}),
    line: 0,
  };
}

/** Physical lines: one per '\n', plus a last line without one. */
export function countLines(bytes: Uint8Array): number {
  let count = 0;
  for (let q = bytes.indexOf(LF); q >= 0; q = bytes.indexOf(LF, q + 1)) count++;
  return bytes.length > 0 && bytes[bytes.length - 1] !== LF ? count + 1 : count;
}

/**
 * Where scanNumber leaves the number it parsed: out[0] (a typed-array slot rather than a module
 * `let`, which V8 reads and writes far more slowly in the hot loop).
 */
const scanOut = new Float64Array(2);

/** Exact powers of ten 1e0 … 1e22 (each exactly representable in float64). */
const POW10 = Array.from({ length: 23 }, (_, k) => Number(`1e${k}`));

/**
 * Fast path for one unquoted decimal number starting at bytes[pos] (blanks around it allowed).
 * Sets scanOut[0] and returns the position after it and its trailing blanks, or -1 when the field
 * is not a plain decimal the fast path can convert exactly (the caller then takes the slow path).
 */
function scanNumber(bytes: Uint8Array, pos: number, end: number): number {
  let c = 0;
  while (pos < end && ((c = bytes[pos]) === SPACE || c === TAB)) pos++;
  let negative = false;
  if (pos < end && (c === MINUS || c === PLUS)) {
    negative = c === MINUS;
    pos++;
  }
  let mantissa = 0;
  let digits = 0; // significant digits in mantissa
  let seen = false; // any digit at all
  let exponent = 0;
  for (; pos < end; pos++) {
    const d = bytes[pos] - ZERO;
    if (d < 0 || d > 9) break;
    seen = true;
    if (digits > 0 || d !== 0) {
      mantissa = mantissa * 10 + d;
      digits++;
    }
  }
  if (pos < end && bytes[pos] === DOT) {
    for (pos++; pos < end; pos++) {
      const d = bytes[pos] - ZERO;
      if (d < 0 || d > 9) break;
      seen = true;
      exponent--;
      if (digits > 0 || d !== 0) {
        mantissa = mantissa * 10 + d;
        digits++;
      }
    }
  }
  if (!seen || digits > 15) return -1;
  if (pos < end && ((c = bytes[pos]) === LOWER_E || c === UPPER_E)) {
    pos = scanExponent(bytes, pos + 1, end);
    if (pos < 0) return -1;
    exponent += scanOut[1];
  }
  // At most 15 digits and |exponent| ≤ 22: |value| < 1e38, far inside MAX_MAGNITUDE.
  let value: number;
  if (mantissa === 0) value = 0;
  else if (exponent >= 0 && exponent <= 22) value = mantissa * POW10[exponent];
  else if (exponent < 0 && exponent >= -22) value = mantissa / POW10[-exponent];
  else return -1;
  scanOut[0] = negative ? -value : value;
  while (pos < end && ((c = bytes[pos]) === SPACE || c === TAB)) pos++;
  return pos;
}

/** The exponent after 'e' into scanOut[1] (sign allowed, at most 4 digits); -1 when malformed. */
function scanExponent(bytes: Uint8Array, pos: number, end: number): number {
  let negative = false;
  const c = pos < end ? bytes[pos] : 0;
  if (c === MINUS || c === PLUS) {
    negative = c === MINUS;
    pos++;
  }
  const begin = pos;
  let value = 0;
  for (; pos < end; pos++) {
    const d = bytes[pos] - ZERO;
    if (d < 0 || d > 9) break;
    value = value * 10 + d;
  }
  if (pos === begin || pos - begin > 4) return -1;
  scanOut[1] = negative ? -value : value;
  return pos;
}

/**
 * The hot loop: walks the bytes once, converting selected fields in place with scanNumber and
 * stepping over the others. A line it cannot take as a plain good row (quotes, blank start, bad
 * value, wrong field count, lone '\r') goes to parseRecordSlowly, which decides.
 * Returns the bytes consumed.
 */
function scanRows(state: ParseState): number {
  const { bytes, slot, kind, width, values, rowLine, fieldCount, delimiter, textField, records } = state;
  const n = state.end;
  let pos = 0;
  while (pos < n) {
    const lineStart = pos;
    const base = state.rows * width;
    let field = 0;
    let good = true;
    let contentEnd = n;
    let textStart = 0;
    let textEnd = 0;
    let c = bytes[pos];
    if (c === LF || c === CR || c === SPACE || c === TAB) good = false; // maybe blank: slow path decides
    while (good) {
      const s = field < fieldCount ? slot[field] : -1;
      if (s >= 0) {
        const k = kind[field];
        if (k === KIND_CATEGORY) {
          // A known level of an unquoted field; anything else (quotes, a new or missing level) goes the slow way.
          const fieldStart = pos;
          while (pos < n && (c = bytes[pos]) !== delimiter && c !== LF && c !== CR && c !== QUOTE) pos++;
          const level = c === QUOTE ? undefined : state.levelIndex[field]!.get(utf8.decode(bytes.subarray(fieldStart, pos)).trim());
          if (level === undefined) {
            good = false;
            break;
          }
          values[base + s] = level;
        } else {
          const next = scanNumber(bytes, pos, n);
          const value = scanOut[0];
          if (
            next < 0 ||
            (k !== KIND_NUMBER &&
              (k === KIND_BINARY ? value !== 0 && value !== 1 : k === KIND_COUNT ? !(value >= 0 && Number.isInteger(value)) : !(value > 0)))
          ) {
            good = false;
            break;
          }
          values[base + s] = k === KIND_BINARY ? (value === 1 ? 1 : 0) : value;
          pos = next;
        }
      } else {
        const fieldStart = pos;
        while (pos < n && (c = bytes[pos]) !== delimiter && c !== LF && c !== CR) {
          if (c === QUOTE) {
            good = false;
            break;
          }
          pos++;
        }
        if (!good) break;
        if (field === textField) {
          textStart = fieldStart;
          textEnd = pos;
        }
      }
      field++;
      if (pos >= n) break;
      c = bytes[pos];
      if (c === delimiter) {
        pos++;
        continue;
      }
      if (c === LF) {
        contentEnd = pos++;
        break;
      }
      if (c === CR && (pos + 1 === n || bytes[pos + 1] === LF)) {
        contentEnd = pos;
        pos += pos + 1 === n ? 1 : 2;
        break;
      }
      good = false; // junk after a number, or a lone '\r'
    }
    if (good && field === fieldCount) {
      if (records) addRecord(records, lineStart, contentEnd, state.rows);
      if (state.texts) state.texts.push(utf8.decode(bytes.subarray(textStart, textEnd)).trim());
      rowLine[state.rows++] = state.line++;
    } else {
      const next = parseRecordSlowly(state, lineStart);
      if (next < 0) return lineStart; // partial: the record goes on past the bytes
      pos = next;
    }
  }
  return n;
}

function addRecord(records: RecordSpans, start: number, end: number, row: number): void {
  const i = records.count++;
  records.start[i] = start;
  records.end[i] = end;
  records.row[i] = row;
}

/**
 * The extent of the record starting at `start`: its content end (before '\r\n' or '\n') and the
 * start of the next record, following quoted fields across line breaks. A quote that does not
 * close before `end` makes the record its physical line only (it is then skipped as unterminated),
 * except in partial mode, where the record may finish in bytes not read yet: null.
 */
function recordExtent(state: ParseState, start: number): { contentEnd: number; next: number } | null {
  const { bytes, end, delimiter } = state;
  let pos = start;
  for (;;) {
    let lead = pos;
    while (lead < end && (bytes[lead] === SPACE || bytes[lead] === TAB)) lead++;
    if (lead < end && bytes[lead] === QUOTE) {
      const close = closingQuote(bytes, lead + 1, end);
      if (close < 0) {
        if (state.options.partial) return null;
        const newline = bytes.indexOf(LF, start);
        return lineExtent(bytes, newline < 0 || newline >= end ? end : newline, end);
      }
      pos = close + 1;
    }
    while (pos < end && bytes[pos] !== delimiter && bytes[pos] !== LF) pos++;
    if (pos >= end || bytes[pos] === LF) return lineExtent(bytes, pos, end);
    pos++; // the delimiter
  }
}

/** Content end and next start for a record whose terminating '\n' is at `newline` (or `end`). */
function lineExtent(bytes: Uint8Array, newline: number, end: number): { contentEnd: number; next: number } {
  const contentEnd = newline > 0 && bytes[newline - 1] === CR ? newline - 1 : newline;
  return { contentEnd, next: newline >= end ? end : newline + 1 };
}

/**
 * The slow, general path for the record starting at `start`: splits it with quoting rules,
 * then keeps, skips (recording why) or ignores (blank) it. Returns the start of the next record,
 * or -1 in partial mode when the record is not complete within the bytes.
 */
function parseRecordSlowly(state: ParseState, start: number): number {
  const { bytes } = state;
  const extent = recordExtent(state, start);
  if (!extent) return -1;
  const { contentEnd, next } = extent;
  const line = state.line;
  for (let q = bytes.indexOf(LF, start); q >= 0 && q < contentEnd; q = bytes.indexOf(LF, q + 1)) state.line++;
  state.line++;
  if (isBlank(bytes, start, contentEnd)) return next;
  const records = state.records;
  if (records) addRecord(records, start, contentEnd, -1);
  const spans = splitLine(bytes, start, contentEnd, state.delimiter);
  if (!Array.isArray(spans)) {
    const column = state.options.header[spans.field] ?? '';
    skipRow(state, line, column, () => utf8.decode(bytes.subarray(start, contentEnd)), spans.reason);
  } else if (spans.length !== state.fieldCount) {
    const reason = `expected ${state.fieldCount} fields, found ${spans.length}`;
    skipRow(state, line, '', () => utf8.decode(bytes.subarray(start, contentEnd)), reason);
  } else if (convertRow(state, spans, line) && records) {
    records.row[records.count - 1] = state.rows - 1;
  }
  return next;
}

function isBlank(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = bytes[i];
    if (c !== SPACE && c !== TAB && c !== CR) return false;
  }
  return true;
}

/** Converts the selected fields of a split record; keeps the row (true) or skips it at the first bad value. */
function convertRow(state: ParseState, spans: FieldSpan[], line: number): boolean {
  const base = state.rows * state.width;
  for (let field = 0; field < spans.length; field++) {
    const s = state.slot[field];
    if (s < 0) continue;
    const text = fieldText(state.bytes, spans[field]);
    const kind = state.kind[field];
    const value =
      kind === KIND_CATEGORY
        ? toLevel(text, state, field)
        : kind === KIND_BINARY
          ? toBinary(text)
          : kind === KIND_COUNT
            ? toCount(text)
            : kind === KIND_POSITIVE
              ? toPositive(text)
              : toNumber(text);
    if ((typeof value === 'string' && state.optional[field]) || (value === MISSING_VALUE && state.marginal[field])) {
      // An optional value that is there but unreadable is not simply absent: note it, to be named.
      if (value !== MISSING_VALUE && state.optional[field]) noteRow(state.unreadable, state, line, state.options.header[field], text, value);
      state.values[base + s] = NaN;
      continue;
    }
    if (typeof value === 'string') {
      skipRow(state, line, state.options.header[field], () => text, value);
      return false;
    }
    state.values[base + s] = value;
  }
  if (state.texts) state.texts.push(fieldText(state.bytes, spans[state.textField]).trim());
  state.rowLine[state.rows++] = line;
  return true;
}

function skipRow(state: ParseState, line: number, column: string, value: () => string, reason: string): void {
  noteRow(state, state, line, column, value(), reason);
}

function noteRow(into: { skippedCount: number; skipped: SkippedRow[] }, state: ParseState, line: number, column: string, value: string, reason: string): void {
  recordSkipped(into, { file: state.options.file, line: state.options.firstLine === undefined ? line : state.options.firstLine + line, column, value, reason });
}

/** Counts a skipped row and keeps its details while fewer than MAX_SKIPPED_DETAILS are kept. */
export function recordSkipped(into: { skippedCount: number; skipped: SkippedRow[] }, row: SkippedRow): void {
  into.skippedCount++;
  if (into.skipped.length < MAX_SKIPPED_DETAILS) into.skipped.push({ ...row, value: truncate(row.value, 100) });
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * Splits bytes [start, end) (one record, no line terminator) into fields. A field whose first
 * non-blank byte is '"' is quoted: it runs to the matching '"' ("" escapes a quote; line breaks
 * are content) and only blanks may follow before the next delimiter. A '"' inside an unquoted
 * field is kept as text.
 */
function splitLine(bytes: Uint8Array, start: number, end: number, delimiter: number): FieldSpan[] | SplitFailure {
  const spans: FieldSpan[] = [];
  let pos = start;
  for (;;) {
    let lead = pos;
    while (lead < end && (bytes[lead] === SPACE || bytes[lead] === TAB)) lead++;
    if (lead < end && bytes[lead] === QUOTE) {
      const close = closingQuote(bytes, lead + 1, end);
      if (close < 0) return { reason: 'unterminated quoted field', field: spans.length };
      spans.push({ start: lead + 1, end: close, quoted: true });
      pos = close + 1;
      while (pos < end && (bytes[pos] === SPACE || bytes[pos] === TAB)) pos++;
      if (pos < end && bytes[pos] !== delimiter) return { reason: 'text after a closing quote', field: spans.length - 1 };
    } else {
      const found = bytes.subarray(pos, end).indexOf(delimiter);
      const fieldEnd = found < 0 ? end : pos + found;
      spans.push({ start: pos, end: fieldEnd, quoted: false });
      pos = fieldEnd;
    }
    if (pos >= end) return spans;
    pos++; // the delimiter
  }
}

/** Whether `at` lies inside a quoted stretch of the line from `start` (an odd number of '"' before it). */
function insideQuotes(bytes: Uint8Array, start: number, at: number): boolean {
  let quotes = 0;
  for (let i = start; i < at; i++) if (bytes[i] === QUOTE) quotes++;
  return quotes % 2 === 1;
}

/** Position of the '"' closing a quoted field whose content starts at `pos`, or -1. */
function closingQuote(bytes: Uint8Array, pos: number, end: number): number {
  for (let i = pos; i < end; i++) {
    if (bytes[i] !== QUOTE) continue;
    if (i + 1 < end && bytes[i + 1] === QUOTE) i++;
    else return i;
  }
  return -1;
}

/** A field's text, with "" unescaped in quoted fields. */
function fieldText(bytes: Uint8Array, span: FieldSpan): string {
  const text = utf8.decode(bytes.subarray(span.start, span.end));
  return span.quoted ? text.replaceAll('""', '"') : text;
}

const MISSING = new Set(['', 'na', 'n/a', 'nan', 'null', 'none']);
/** Whether a field's text is a missing value (empty, NA, N/A, NaN, null, None; any case). */
export function isMissingText(text: string): boolean {
  return MISSING.has(text.trim().toLowerCase());
}

/** The reason a missing value is given: skipped, or NaN in a `marginal` column. */
const MISSING_VALUE = 'missing value';
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
/** Digits with a comma in them (1,5 or 1,234.5): a decimal comma or grouped thousands, which CSV numbers do not have. */
const GROUPED = /^[+-]?\d+(?:,\d+)+(?:\.\d*)?$/;
const NOT_A_NUMBER_GROUPED = 'not a number (a decimal comma or a thousands separator? write numbers as 1234.5)';

/** The reason a decimal too large to use is skipped (MAX_MAGNITUDE). */
export const TOO_LARGE = 'beyond ±1e150 (its square would overflow)';

/** A finite decimal number within ±MAX_MAGNITUDE, or the reason the text is not one. */
export function toNumber(text: string): number | string {
  const t = text.trim();
  if (MISSING.has(t.toLowerCase())) return MISSING_VALUE;
  if (!DECIMAL.test(t)) return GROUPED.test(t) ? NOT_A_NUMBER_GROUPED : 'not a number';
  const value = Number(t);
  return Math.abs(value) < MAX_MAGNITUDE ? value : TOO_LARGE;
}

/** A whole number ≥ 0 (a count; 3.0 too), or the reason the text is not one. */
export function toCount(text: string): number | string {
  const value = toNumber(text);
  return typeof value === 'string' || (value >= 0 && Number.isInteger(value)) ? value : 'not a count (a whole number ≥ 0)';
}

/** A number > 0 (an exposure), or the reason the text is not one. */
export function toPositive(text: string): number | string {
  const value = toNumber(text);
  return typeof value === 'string' || value > 0 ? value : 'not a positive number';
}

/**
 * The index of a category's text (trimmed) among its column's levels, or the reason it has none:
 * missing, or a level the planner's sample did not have (collected instead while sampling).
 */
function toLevel(text: string, state: ParseState, field: number): number | string {
  const t = text.trim();
  if (MISSING.has(t.toLowerCase())) return MISSING_VALUE;
  const index = state.levelIndex[field]!;
  const known = index.get(t);
  if (known !== undefined) return known;
  const selected = state.options.select[state.slot[field]];
  if (state.options.collectLevels) {
    const levels = (selected.levels ??= []);
    index.set(t, levels.length);
    levels.push(t);
    return levels.length - 1;
  }
  const levels = selected.levels ?? [];
  const shown = levels.slice(0, 10).map((l) => JSON.stringify(l)).join(', ') + (levels.length > 10 ? ', …' : '');
  return `not a level of the column in the planner's sample (${levels.length} levels: ${shown}); docs/model.md §16`;
}

/** 0 or 1 from 0/1/true/false (any case; numeric forms like 1.0 too), or the reason it is not. */
export function toBinary(text: string): number | string {
  const t = text.trim().toLowerCase();
  if (t === 'true') return 1;
  if (t === 'false') return 0;
  if (MISSING.has(t)) return MISSING_VALUE;
  const value = DECIMAL.test(t) ? Number(t) : NaN;
  if (value === 0) return 0; // also -0
  return value === 1 ? 1 : 'not 0/1 or true/false';
}

/**
 * One skipped row as a message in the DataError style:
 * `data.csv:17: column "x2": "abc" is not a number`, `data.csv:9: expected 3 fields, found 2`,
 * `data.csv:4: column "y": missing value ("NA")`.
 */
export function formatSkipped(row: SkippedRow): string {
  const where = formatLocation({ file: row.file, line: row.line, column: row.column || undefined });
  if (row.column === '') return where + row.reason;
  if (row.reason.startsWith('not ')) return `${where}"${row.value}" is ${row.reason}`;
  return row.value.trim() === '' ? where + row.reason : `${where}${row.reason} ("${row.value}")`;
}
