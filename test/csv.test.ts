import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  DataError,
  formatSkipped,
  MAX_MAGNITUDE,
  parseHeader,
  parseRows,
  planByteShards,
  readHeader,
  readOwnedLines,
  resolveColumn,
  type ParseOptions,
} from '../lib/data/csv.js';
import { openDataFile } from '../lib/data/dataset.js';
import { asDataError } from '../lib/data/errors.js';
import { MemoryObjectStore } from '../lib/pipeline/memory-store.js';
import { NotFoundError } from '../lib/pipeline/ports.js';

/** The in-memory store, counting range requests (a shard should cost one). */
class TinyStore extends MemoryObjectStore {
  rangeRequests = 0;
  heads = 0;

  override async head(key: string) {
    this.heads++;
    return super.head(key);
  }

  override async getRange(key: string, start: number, end: number, options?: { ifMatch?: string }): Promise<Uint8Array> {
    const bytes = await super.getRange(key, start, end, options);
    this.rangeRequests++;
    return bytes;
  }
}

const encode = (text: string): Uint8Array => new TextEncoder().encode(text);

function numbers(...columns: string[]): ParseOptions['select'] {
  return columns.map((column) => ({ column, kind: 'number' as const }));
}

/** Catches the DataError `run` throws. */
function dataError(run: () => unknown): DataError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DataError);
    return error as DataError;
  }
  throw new Error('expected a DataError');
}

describe('DataError', () => {
  it('names file, line and column in the message', () => {
    const error = new DataError('"abc" is not a number', { file: 'data.csv', line: 17, column: 'x2' });
    expect(error.message).toBe('data.csv:17: column "x2": "abc" is not a number');
    expect(error.name).toBe('DataError');
    expect(error).toMatchObject({ file: 'data.csv', line: 17, column: 'x2', detail: '"abc" is not a number' });
  });

  it('turns a NotFoundError into "file not found" with the cause kept', () => {
    const cause = new NotFoundError('datasets/a/data/x.csv');
    const error = asDataError(cause, 'x.csv') as DataError;
    expect(error.message).toBe('x.csv: file not found');
    expect(error.cause).toBe(cause);
    const other = new Error('boom');
    expect(asDataError(other, 'x.csv')).toBe(other);
  });
});

describe('parseHeader', () => {
  it('does not split a quoted name by another delimiter, and refuses old-Mac lone-CR line endings', () => {
    expect(parseHeader(encode('x1,x2,y,"note;a;b;c;d"\n1,2,3,n\n'), 'd.csv')).toMatchObject({ columns: ['x1', 'x2', 'y', 'note;a;b;c;d'], delimiter: ',' });
    expect(parseHeader(encode('x1;x2;y\n1;2;3\n'), 'd.csv').delimiter).toBe(';');
    expect(() => parseHeader(encode('x,y\r1,2\r3,4\r'), 'mac.csv')).toThrowError('mac.csv:1: a line ends with a lone carriage return');
    expect(parseHeader(encode('"a\rb",c\r\n1,2\r\n'), 'd.csv').columns).toEqual(['a\rb', 'c']);
  });

  it('refuses UTF-16 text and binary data by name, not with column names of raw bytes', () => {
    const utf16 = (bom: number[], littleEndian: boolean) =>
      new Uint8Array([...bom, ...[...'x,y\n1,2\n'].flatMap((c) => (littleEndian ? [c.charCodeAt(0), 0] : [0, c.charCodeAt(0)]))]);
    expect(() => parseHeader(utf16([0xff, 0xfe], true), 'le.csv')).toThrowError('le.csv:1: the file is UTF-16 text');
    expect(() => parseHeader(utf16([0xfe, 0xff], false), 'be.csv')).toThrowError('be.csv:1: the file is UTF-16 text');
    expect(() => parseHeader(utf16([], true), 'nobom.csv')).toThrowError('nobom.csv:1: byte 2 of the header line is a NUL byte');
    expect(() => parseHeader(new Uint8Array([0x78, 0x2c, 0x00, 0x01, 0x0a, 0x31]), 'bin.csv')).toThrowError('bin.csv:1: byte 3 of the header line is a NUL byte');
  });

  it('reads names and the offset of the first data line', () => {
    expect(parseHeader(encode('a,b,c\n1,2,3\n'), 'd.csv')).toEqual({ columns: ['a', 'b', 'c'], dataStart: 6, delimiter: ',' });
  });

  it('skips a UTF-8 BOM and handles CRLF', () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...encode('x,y\r\n1,2\r\n')]);
    expect(parseHeader(bytes, 'd.csv')).toEqual({ columns: ['x', 'y'], dataStart: 8, delimiter: ',' });
  });

  it('unquotes names with "" escapes and commas, trims unquoted names', () => {
    const header = parseHeader(encode('"say ""hi""", b ,"c,d",\u00e9t\u00e9\n'), 'd.csv');
    expect(header.columns).toEqual(['say "hi"', 'b', 'c,d', '\u00e9t\u00e9']);
    expect(header.dataStart).toBe(encode('"say ""hi""", b ,"c,d",\u00e9t\u00e9\n').length);
  });

  it('takes a header without newline as a header-only file', () => {
    expect(parseHeader(encode('a,b'), 'd.csv')).toEqual({ columns: ['a', 'b'], dataStart: 3, delimiter: ',' });
  });

  it('rejects an empty file, a BOM-only file and an empty first line', () => {
    expect(dataError(() => parseHeader(new Uint8Array(0), 'd.csv')).message).toBe('d.csv: file is empty');
    expect(dataError(() => parseHeader(new Uint8Array([0xef, 0xbb, 0xbf]), 'd.csv')).message).toBe('d.csv: file is empty');
    const blank = dataError(() => parseHeader(encode('\r\n1,2\n'), 'd.csv'));
    expect(blank.message).toBe('d.csv:1: header missing (the first line is empty)');
    expect(blank.line).toBe(1);
  });

  it('rejects duplicated names and an unterminated quote', () => {
    expect(dataError(() => parseHeader(encode('a,b,a\n'), 'd.csv')).message).toBe(
      'd.csv:1: duplicated column name "a" (columns 1 and 3)',
    );
    expect(dataError(() => parseHeader(encode('a,"b\n'), 'd.csv')).message).toMatch(/^d\.csv:1: header: unterminated/);
  });

  it('detects ; tab and | as the delimiter, and takes a given one', () => {
    expect(parseHeader(encode('a;b;c\n1,5;2;3\n'), 'd.csv')).toMatchObject({ columns: ['a', 'b', 'c'], delimiter: ';' });
    expect(parseHeader(encode('a\tb\n'), 'd.csv')).toMatchObject({ columns: ['a', 'b'], delimiter: '\t' });
    expect(parseHeader(encode('a|b|c\n'), 'd.csv')).toMatchObject({ columns: ['a', 'b', 'c'], delimiter: '|' });
    // A tie goes to the comma; a given delimiter settles it.
    expect(parseHeader(encode('a,b;c\n'), 'd.csv')).toMatchObject({ columns: ['a', 'b;c'], delimiter: ',' });
    expect(parseHeader(encode('a,b;c\n'), 'd.csv', ';')).toMatchObject({ columns: ['a,b', 'c'], delimiter: ';' });
  });

  it('allows one empty name (an index column)', () => {
    expect(parseHeader(encode(',a,b\n'), 'd.csv').columns).toEqual(['', 'a', 'b']);
  });
});

describe('readHeader', () => {
  it('reads a header longer than the first request, and reports the size', async () => {
    const store = new TinyStore();
    const names = Array.from({ length: 20_000 }, (_, i) => `column_${i}`);
    const text = `${names.join(',')}\n${names.map(() => '1').join(',')}\n`;
    await store.put('k', text);
    const header = await readHeader(store, 'k', 'wide.csv');
    expect(header.columns).toEqual(names);
    expect(header.dataStart).toBe(names.join(',').length + 1);
    expect(header.size).toBe(encode(text).length);
  });

  it('turns a missing object into "file not found"', async () => {
    await expect(readHeader(new TinyStore(), 'nope', 'nope.csv')).rejects.toThrow('nope.csv: file not found');
  });

  it("opens a listed file with one request: the listing's size and ETag, the header line from the same bytes", async () => {
    const store = new TinyStore();
    await store.put('k', '\uFEFFa,b\r\n1,2\n');
    const [info] = await store.list('k');
    const file = await openDataFile(store, 'k', 'bom.csv', info);
    expect([store.heads, store.rangeRequests]).toEqual([0, 1]);
    // The text of the header line, its BOM dropped, as workers split it again (dataset.ts applyDelimiter).
    expect(file).toMatchObject({ size: info.size, etag: info.etag, dataStart: 8, columns: ['a', 'b'], headerLine: 'a,b\r\n' });
    // Without a listing, one HEAD asks for them.
    await openDataFile(store, 'k', 'bom.csv');
    expect([store.heads, store.rangeRequests]).toEqual([1, 2]);
  });
});

describe('resolveColumn', () => {
  it('names the role and lists the columns', () => {
    expect(resolveColumn(['a', 'b', 'c'], 'b', 'data.csv')).toBe(1);
    expect(dataError(() => resolveColumn(['a', 'b', 'c'], 'yy', 'data.csv', 'target')).message).toBe(
      'data.csv: unknown target column "yy" (columns: a, b, c)',
    );
  });

  it('parseRows rejects an unknown selected column', () => {
    const error = dataError(() => parseRows(encode('1\n'), { file: 'd.csv', header: ['a'], select: numbers('b') }));
    expect(error.message).toBe('d.csv: unknown column "b" (columns: a)');
  });
});

describe('parseRows', () => {
  const header = ['a', 'b', 'c'];

  it('converts decimal, exponent and signed forms, trimming blanks', () => {
    const text = '1,2,3\n-1.5, +2e3 ,.25\n1E-2,\t-0.0,5.\n';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('a', 'b', 'c') });
    expect(result.rows).toBe(3);
    expect([...result.values]).toEqual([1, 2, 3, -1.5, 2000, 0.25, 0.01, -0, 5]);
    expect(result.lineCount).toBe(3);
    expect([...result.rowLine]).toEqual([0, 1, 2]);
    expect(result.skippedCount).toBe(0);
  });

  it('converts only the selected columns, in select order', () => {
    const text = 'hello,2,3\n"w,o""rld",5,6\n';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('c', 'b') });
    expect(result.rows).toBe(2);
    expect([...result.values]).toEqual([3, 2, 6, 5]);
  });

  it('handles quoted numbers, CRLF, blank lines and a last line without newline', () => {
    const text = '"1","2.5",3\r\n\r\n  \r\n4,"5",6\r\n\n7,8,9';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('a', 'b', 'c'), firstLine: 2 });
    expect(result.rows).toBe(3);
    expect([...result.values]).toEqual([1, 2.5, 3, 4, 5, 6, 7, 8, 9]);
    expect(result.lineCount).toBe(6);
    expect([...result.rowLine]).toEqual([0, 3, 5]);
    expect(result.skippedCount).toBe(0);
  });

  it('skips missing and non-numeric values with file, line, column and reason', () => {
    const text = ['1,2,3', '1,,3', '1,NA,3', 'NaN,2,3', '1,2,abc', '1,inf,3', '1,2,1e999', '1,"1,5",3', '4,5,6'].join('\n');
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('a', 'b', 'c'), firstLine: 2 });
    expect(result.rows).toBe(2);
    expect([...result.values]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...result.rowLine]).toEqual([0, 8]);
    expect(result.skippedCount).toBe(7);
    expect(result.skipped.map(({ line, column, value, reason }) => [line, column, value, reason])).toEqual([
      [3, 'b', '', 'missing value'],
      [4, 'b', 'NA', 'missing value'],
      [5, 'a', 'NaN', 'missing value'],
      [6, 'c', 'abc', 'not a number'],
      [7, 'b', 'inf', 'not a number'],
      [8, 'c', '1e999', 'beyond ±1e150 (its square would overflow)'],
      [9, 'b', '1,5', 'not a number (a decimal comma or a thousands separator? write numbers as 1234.5)'],
    ]);
    expect(result.skipped.every((row) => row.file === 'd.csv')).toBe(true);
    expect(formatSkipped(result.skipped[3])).toBe('d.csv:6: column "c": "abc" is not a number');
    expect(formatSkipped(result.skipped[1])).toBe('d.csv:4: column "b": missing value ("NA")');
    expect(formatSkipped(result.skipped[0])).toBe('d.csv:3: column "b": missing value');
  });

  it('accepts 0/1/true/false for a binary column and skips anything else', () => {
    const text = ['1,true', '2,FALSE', '3,0', '4,1', '5,2', '6,1.0', '7,0.0', '8,yes', '9,', '10, True '].join('\r\n');
    const result = parseRows(encode(text), {
      file: 'b.csv',
      header: ['x', 'y'],
      select: [
        { column: 'x', kind: 'number' },
        { column: 'y', kind: 'binary' },
      ],
      firstLine: 2,
    });
    expect(result.rows).toBe(7);
    expect([...result.values]).toEqual([1, 1, 2, 0, 3, 0, 4, 1, 6, 1, 7, 0, 10, 1]);
    expect(result.skippedCount).toBe(3);
    expect(result.skipped.map(({ line, value, reason }) => [line, value, reason])).toEqual([
      [6, '2', 'not 0/1 or true/false'],
      [9, 'yes', 'not 0/1 or true/false'],
      [10, '', 'missing value'],
    ]);
    expect(formatSkipped(result.skipped[0])).toBe('b.csv:6: column "y": "2" is not 0/1 or true/false');
  });

  it('skips rows with the wrong number of fields', () => {
    const text = '1,2,3\n1,2\n1,2,3,4\n1,2,3,\n"1,2",3\n5,6,7\n';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('a') });
    expect(result.rows).toBe(2);
    expect([...result.values]).toEqual([1, 5]);
    expect(result.skippedCount).toBe(4);
    expect(result.skipped.map(({ line, column, reason }) => [line, column, reason])).toEqual([
      [1, '', 'expected 3 fields, found 2'],
      [2, '', 'expected 3 fields, found 4'],
      [3, '', 'expected 3 fields, found 4'],
      [4, '', 'expected 3 fields, found 2'],
    ]);
    expect(result.skipped[0].value).toBe('1,2');
    expect(formatSkipped({ ...result.skipped[0], line: 3 })).toBe('d.csv:3: expected 3 fields, found 2');
  });

  it('reads a quoted field holding line breaks as one record (RFC 4180), cited by its first line', () => {
    const text = '1,"a\nb\r\nc",3\n1,"x"y,3\n2,2,2\n7,"never closed,3\n8,8,8\n';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('a', 'c'), firstLine: 2, records: true });
    expect(result.rows).toBe(3);
    expect([...result.values]).toEqual([1, 3, 2, 2, 8, 8]);
    expect([...result.rowLine]).toEqual([0, 4, 6]);
    expect(result.lineCount).toBe(7);
    expect(result.skipped.map(({ line, reason }) => [line, reason])).toEqual([
      [5, 'text after a closing quote'],
      [7, 'unterminated quoted field'], // no closing quote anywhere after it: its physical line only
    ]);
    const records = result.records!;
    const spans = Array.from({ length: records.count }, (_, i) => [Buffer.from(encode(text).subarray(records.start[i], records.end[i])).toString(), records.row[i]]);
    expect(spans).toEqual([['1,"a\nb\r\nc",3', 0], ['1,"x"y,3', -1], ['2,2,2', 1], ['7,"never closed,3', -1], ['8,8,8', 2]]);
  });

  it('partial: stops before a record that may go on past the bytes', () => {
    const text = '1,2,3\n4,"5\n6",7\n8,"9';
    const options = { file: 'd.csv', header, select: numbers('a'), partial: true };
    expect(parseRows(encode(text), options)).toMatchObject({ rows: 2, consumed: text.indexOf('8') });
    expect(parseRows(encode('1,2,3\n4,"5\n6'), options)).toMatchObject({ rows: 1, consumed: 6 });
    expect(parseRows(encode('1,2,3\n4,5'), options)).toMatchObject({ rows: 1, consumed: 6 });
  });

  it('splits on the given delimiter and keeps a text column', () => {
    const text = '1,5;2;x7\n3;"4;4";x8\n';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('b'), delimiter: ';', text: 'c' });
    expect(result.rows).toBe(1);
    expect(result.texts).toEqual(['x7']);
    expect(result.skipped[0]).toMatchObject({ column: 'b', value: '4;4', reason: 'not a number' });
  });

  it('says a comma inside digits may be a decimal comma or a thousands separator', () => {
    const result = parseRows(encode('1,"1,5",1\n1,"12,345.5",1\n1,"a,b",1\n'), { file: 'd.csv', header, select: numbers('b'), firstLine: 2 });
    expect(result.skipped.map((s) => s.reason)).toEqual([
      'not a number (a decimal comma or a thousands separator? write numbers as 1234.5)',
      'not a number (a decimal comma or a thousands separator? write numbers as 1234.5)',
      'not a number',
    ]);
  });

  it('skips values whose square would overflow, with the reason', () => {
    const text = '1,1e149,1\n1,1.4e154,1\n1,-1e200,1\n1,1e308,1\n';
    const result = parseRows(encode(text), { file: 'd.csv', header, select: numbers('b'), firstLine: 2 });
    expect([...result.values]).toEqual([1e149]);
    expect(result.skipped.map((s) => formatSkipped(s))).toEqual([
      'd.csv:3: column "b": beyond ±1e150 (its square would overflow) ("1.4e154")',
      'd.csv:4: column "b": beyond ±1e150 (its square would overflow) ("-1e200")',
      'd.csv:5: column "b": beyond ±1e150 (its square would overflow) ("1e308")',
    ]);
  });

  it('counts every skipped row but details only the first 50', () => {
    const lines = Array.from({ length: 120 }, (_, i) => (i % 2 === 0 ? `${i},x,1` : `${i},2,3`));
    const result = parseRows(encode(lines.join('\n')), { file: 'd.csv', header, select: numbers('a', 'b') });
    expect(result.rows).toBe(60);
    expect(result.skippedCount).toBe(60);
    expect(result.skipped).toHaveLength(50);
    expect(result.skipped[49].line).toBe(98);
  });

  it('handles empty input and a header-only selection', () => {
    const empty = parseRows(new Uint8Array(0), { file: 'd.csv', header, select: numbers('a') });
    expect(empty).toMatchObject({ rows: 0, lineCount: 0, skippedCount: 0 });
    const none = parseRows(encode('1,2,3\nx,y,z\n'), { file: 'd.csv', header, select: [] });
    expect(none.rows).toBe(2);
    expect(none.values).toHaveLength(0);
  });

  it('agrees with Number() bit for bit on any number text (fast path and slow path alike)', () => {
    const formatted = fc.tuple(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 17 })).map(
      ([x, style, digits]) =>
        [String(x), x.toPrecision(digits), x.toExponential(digits - 1), x.toFixed(Math.min(digits, 20)), ` ${x}\t`, `+${Math.abs(x)}`][style],
    );
    const digitText = fc
      .tuple(fc.stringMatching(/^[0-9]{1,20}$/), fc.stringMatching(/^[0-9]{0,20}$/), fc.integer({ min: -30, max: 30 }), fc.boolean())
      .map(([int, frac, exp, withExp]) => `${int}.${frac}${withExp ? `e${exp}` : ''}`);
    fc.assert(
      fc.property(fc.array(fc.oneof(formatted, digitText), { minLength: 1, maxLength: 20 }), (texts) => {
        const usable = texts.filter((text) => Math.abs(Number(text.trim())) < MAX_MAGNITUDE && text.trim() !== '');
        const result = parseRows(encode(usable.join('\n')), { file: 'p.csv', header: ['v'], select: numbers('v') });
        expect(result.skippedCount).toBe(0);
        expect(result.rows).toBe(usable.length);
        usable.forEach((text, i) => expect(Object.is(result.values[i], Number(text.trim()))).toBe(true));
      }),
      { numRuns: 300 },
    );
  });
});

describe('planByteShards', () => {
  it('covers the data contiguously with non-empty ranges', () => {
    expect(planByteShards(100, 10, 25)).toEqual([
      { start: 10, end: 32 },
      { start: 32, end: 55 },
      { start: 55, end: 77 },
      { start: 77, end: 100 },
    ]);
    expect(planByteShards(10, 10, 30)).toEqual([]);
    expect(planByteShards(11, 10, 1e9)).toEqual([{ start: 10, end: 11 }]);
    expect(() => planByteShards(100, 0, 0)).toThrow(RangeError);
  });

  it('is contiguous for any sizes', () => {
    fc.assert(
      fc.property(fc.nat(10_000), fc.nat(10_000), fc.integer({ min: 1, max: 20_000 }), (size, dataStart, target) => {
        const shards = planByteShards(size, dataStart, target);
        if (size <= dataStart) {
          expect(shards).toEqual([]);
          return;
        }
        expect(shards[0].start).toBe(dataStart);
        expect(shards[shards.length - 1].end).toBe(size);
        shards.forEach((shard, i) => {
          expect(shard.end).toBeGreaterThan(shard.start);
          expect(shard.end - shard.start).toBeLessThanOrEqual(Math.ceil(target));
          if (i > 0) expect(shard.start).toBe(shards[i - 1].end);
        });
      }),
    );
  });
});

describe('readOwnedLines', () => {
  const header = 'a,b\n';
  const lines = Array.from({ length: 1000 }, (_, i) => `${i},${(i * 0.37).toFixed(3)}\n`);
  const text = header + lines.join('');

  it('needs one range request per shard for ordinary lines', async () => {
    const store = new TinyStore();
    await store.put('k', text);
    const size = encode(text).length;
    const shards = planByteShards(size, header.length, 1000);
    let rows = 0;
    for (const shard of shards) {
      const before = store.rangeRequests;
      const bytes = await readOwnedLines(store, 'k', shard.start, shard.end, header.length, { fileSize: size });
      expect(store.rangeRequests - before).toBe(1);
      rows += parseRows(bytes, { file: 'k', header: ['a', 'b'], select: numbers('a') }).rows;
    }
    expect(rows).toBe(1000);
  });

  it('fetches more when the last owned line is longer than the overlap', async () => {
    const store = new TinyStore();
    const long = `1,${'9'.repeat(300_000)}\n`;
    await store.put('k', `${header}0,0\n${long}2,2\n`);
    const bytes = await readOwnedLines(store, 'k', 4, 10, 4);
    expect(new TextDecoder().decode(bytes)).toBe(`0,0\n${long}`);
    expect(store.rangeRequests).toBeGreaterThan(1);
    expect(store.rangeRequests).toBeLessThanOrEqual(5);
    // The next shard starts inside the long line: it owns only the line after it.
    const rest = await readOwnedLines(store, 'k', 10, 300_020, 4);
    expect(new TextDecoder().decode(rest)).toBe('2,2\n');
  });

  it('returns nothing for a shard inside one line, and for an empty range', async () => {
    const store = new TinyStore();
    await store.put('k', 'a\n123456789\n');
    expect(await readOwnedLines(store, 'k', 4, 8, 2)).toHaveLength(0);
    expect(await readOwnedLines(store, 'k', 5, 5, 2)).toHaveLength(0);
    expect(new TextDecoder().decode(await readOwnedLines(store, 'k', 0, 3, 2))).toBe('123456789\n');
  });

  it('fails with NotFoundError for a missing object (callers turn it into a DataError)', async () => {
    await expect(readOwnedLines(new TinyStore(), 'nope', 0, 10, 0)).rejects.toBeInstanceOf(NotFoundError);
  });
});

/** One generated data line: its text and, when it is a good row, its values. */
interface GeneratedLine {
  text: string;
  values?: number[];
}

const FIELDS = 3;

/** A good row (random widths), a bad value, a wrong field count, a quoted value or a blank line. */
const generatedLine: fc.Arbitrary<GeneratedLine> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .array(
        fc.tuple(fc.integer({ min: -1e6, max: 1e6 }), fc.integer({ min: 0, max: 6 }), fc.nat(3)).map(([n, decimals, pad]) => {
          const text = (n / 10 ** decimals).toFixed(decimals);
          return { text: `${' '.repeat(pad)}${text}`, value: Number(text) };
        }),
        { minLength: FIELDS, maxLength: FIELDS },
      )
      .map((fields) => ({ text: fields.map((f) => f.text).join(','), values: fields.map((f) => f.value) })),
  },
  { weight: 1, arbitrary: fc.constantFrom('1,abc,3', '1,,3', 'NA,2,3', '1,2', '1,2,3,4', '"1,2",3,4') .map((text) => ({ text })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 99 }).map((n) => ({ text: `"${n}",${n},"${n}"`, values: [n, n, n] })) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ').map((text) => ({ text })) },
);

const generatedFile = fc.record({
  lines: fc.array(generatedLine, { maxLength: 60 }),
  crlf: fc.boolean(),
  trailingNewline: fc.boolean(),
  bom: fc.boolean(),
});

function renderFile(file: { lines: GeneratedLine[]; crlf: boolean; trailingNewline: boolean; bom: boolean }): Uint8Array {
  const eol = file.crlf ? '\r\n' : '\n';
  const body = file.lines.map((line) => line.text).join(eol);
  const tail = file.lines.length > 0 && file.trailingNewline ? eol : '';
  const text = `${file.bom ? '\ufeff' : ''}a,b,c${eol}${body}${tail}`;
  return encode(text);
}

/** Reads every shard and parses it; returns the concatenation of results. */
async function readAllShards(
  bytes: Uint8Array,
  shards: { start: number; end: number }[],
  overlap: number | undefined,
  knownSize: boolean,
): Promise<{ owned: Uint8Array[]; values: number[]; skippedCount: number; rows: number }> {
  const store = new TinyStore();
  await store.put('data.csv', bytes);
  const { columns, dataStart } = parseHeader(bytes, 'data.csv');
  const options = { overlap, fileSize: knownSize ? bytes.length : undefined };
  const owned: Uint8Array[] = [];
  const values: number[] = [];
  let skippedCount = 0;
  let rows = 0;
  for (const shard of shards) {
    const part = await readOwnedLines(store, 'data.csv', shard.start, shard.end, dataStart, options);
    const parsed = parseRows(part, { file: 'data.csv', header: columns, select: numbers('a', 'b', 'c') });
    owned.push(part);
    values.push(...parsed.values);
    skippedCount += parsed.skippedCount;
    rows += parsed.rows;
  }
  return { owned, values, skippedCount, rows };
}

function checkShardedRead(
  file: { lines: GeneratedLine[]; crlf: boolean; trailingNewline: boolean; bom: boolean },
  bytes: Uint8Array,
  result: Awaited<ReturnType<typeof readAllShards>>,
): void {
  const { dataStart } = parseHeader(bytes, 'data.csv');
  const good = file.lines.filter((line) => line.values !== undefined);
  const bad = file.lines.filter((line) => line.values === undefined && line.text.trim() !== '');
  // The shards' owned bytes partition the data exactly: nothing lost, nothing read twice.
  expect(Buffer.concat(result.owned).equals(Buffer.from(bytes.subarray(dataStart)))).toBe(true);
  expect(result.rows).toBe(good.length);
  expect(result.values).toEqual(good.flatMap((line) => line.values!));
  expect(result.skippedCount).toBe(bad.length);
}

describe('sharded reading (property)', () => {
  it('planByteShards + readOwnedLines + parseRows yields every row exactly once, in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        generatedFile,
        fc.integer({ min: 1, max: 400 }),
        fc.option(fc.integer({ min: 1, max: 16 })),
        fc.boolean(),
        async (file, target, overlap, knownSize) => {
          const bytes = renderFile(file);
          const { dataStart } = parseHeader(bytes, 'data.csv');
          const shards = planByteShards(bytes.length, dataStart, target);
          checkShardedRead(file, bytes, await readAllShards(bytes, shards, overlap ?? undefined, knownSize));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('any list of cut points yields every row exactly once, in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        generatedFile,
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
        fc.option(fc.integer({ min: 1, max: 16 })),
        fc.boolean(),
        async (file, fractions, overlap, knownSize) => {
          const bytes = renderFile(file);
          const { dataStart } = parseHeader(bytes, 'data.csv');
          const cuts = fractions.map((f) => dataStart + Math.floor(f * (bytes.length - dataStart)));
          const points = [...new Set([dataStart, ...cuts, bytes.length])].sort((x, y) => x - y);
          const shards = points.slice(1).map((end, i) => ({ start: points[i], end }));
          checkShardedRead(file, bytes, await readAllShards(bytes, shards, overlap ?? undefined, knownSize));
        },
      ),
      { numRuns: 300 },
    );
  });
});
