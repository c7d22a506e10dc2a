/**
 * Errors of the data layer: a fatal problem with an input file, named by file, line and column
 * so that a user can open the file and find it.
 */
import { ClusterwiseError } from '../errors.js';
import { NotFoundError } from '../pipeline/ports.js';

/** Where in the input a problem is: file name, 1-based physical line, column name. */
export interface DataLocation {
  file: string;
  /** 1-based physical line in the file. */
  line?: number;
  /** Column name (from the header). */
  column?: string;
}

/**
 * Formats a location as the prefix of a message: `data.csv:17: column "x2": `.
 * Shared by DataError and the skipped-row report so both read the same way.
 */
export function formatLocation(where: DataLocation): string {
  const line = where.line === undefined ? '' : `:${where.line}`;
  const column = where.column === undefined ? '' : `column "${where.column}": `;
  return `${where.file}${line}: ${column}`;
}

/**
 * A fatal problem with an input file (missing, empty, no header, duplicated or unknown column).
 * Rows that merely fail to parse are not DataErrors: they are skipped and counted (see csv.ts).
 *
 * The message reads `data.csv:17: column "x2": "abc" is not a number`; `detail` holds the part
 * after the location, for callers that assemble their own report.
 */
export class DataError extends ClusterwiseError {
  readonly file: string;
  readonly line?: number;
  readonly column?: string;
  readonly detail: string;

  constructor(detail: string, where: DataLocation, options?: { cause?: unknown }) {
    super(formatLocation(where) + detail, options);
    this.name = 'DataError';
    this.file = where.file;
    if (where.line !== undefined) this.line = where.line;
    if (where.column !== undefined) this.column = where.column;
    this.detail = detail;
  }
}

/** `data.csv: file not found`, keeping the store's NotFoundError as the cause. */
export function fileNotFound(file: string, cause?: unknown): DataError {
  return new DataError('file not found', { file }, { cause });
}

/**
 * Turns a store's NotFoundError into `fileNotFound(file)`; any other error passes through
 * unchanged. Use as `.catch((e) => { throw asDataError(e, file); })` around store reads.
 */
export function asDataError(error: unknown, file: string): unknown {
  return error instanceof NotFoundError ? fileNotFound(file, error) : error;
}
