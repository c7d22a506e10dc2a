/**
 * assignments.csv joined back to the data: the pipeline writes one line per kept row, numbered
 * among kept rows (row,cluster,probability); this reads the data files again in the same order,
 * keeps the same rows (the same parse and the same overflow screen, lib/data), and writes
 * file,line[,id],cluster,probability, so each assignment can be found in its file.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { parseRows } from '../lib/data/csv.js';
import { dropOverflowingRows } from '../lib/data/dataset.js';
import { DataError } from '../lib/data/errors.js';
import { readHeader } from '../lib/data/csv.js';
import { readRecordChunks } from '../lib/data/records.js';
import { FolderObjectStore } from '../lib/pipeline/folder-store.js';
import { localDataKey } from '../lib/local/threads.js';
import type { PosteriorDocument } from '../lib/model/summary.js';

/** A CSV field: quoted when it holds a comma, a quote or a line break. */
function field(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Rewrites `assignmentsPath` in place (through a temporary file) with file and line (and the id column). */
export async function joinAssignments(assignmentsPath: string, files: string[], doc: PosteriorDocument): Promise<void> {
  const { plan, standardization, config } = doc.state;
  const id = config.id;
  const temporary = `${assignmentsPath}.joining`;
  const out = createWriteStream(temporary);
  const lines = createInterface({ input: createReadStream(assignmentsPath), crlfDelay: Infinity })[Symbol.asyncIterator]();
  const header = await lines.next();
  if (header.done || header.value !== 'row,cluster,probability') throw new DataError('unexpected header', { file: assignmentsPath });
  out.write(`file,line,${id === undefined ? '' : `${field(id)},`}cluster,probability\n`);
  const store = new FolderObjectStore('/', { durable: false, etags: 'stat' });
  let row = 0;
  for (const file of files) {
    const absolute = path.resolve(file);
    const head = await readHeader(store, localDataKey(absolute), file, config.delimiter);
    let firstLine = 2;
    for await (const bytes of readRecordChunks(absolute, { dataStart: head.dataStart, header: head.columns, delimiter: head.delimiter })) {
      const parsed = parseRows(bytes, { file, header: head.columns, select: plan.select, delimiter: head.delimiter, ...(id === undefined ? {} : { text: id }) });
      dropOverflowingRows(plan, standardization, parsed);
      for (let i = 0; i < parsed.rows; i++) {
        const next = await lines.next();
        if (next.done) throw new DataError(`fewer assignments than rows (at ${file}:${firstLine + parsed.rowLine[i]})`, { file: assignmentsPath });
        const [, cluster, probability] = next.value.split(',');
        const name = id === undefined ? '' : `${field(parsed.texts![i])},`;
        if (!out.write(`${field(file)},${firstLine + parsed.rowLine[i]},${name}${cluster},${probability}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
        row++;
      }
      firstLine += parsed.lineCount;
    }
  }
  if (!(await lines.next()).done) throw new DataError(`more assignments than the ${row} rows read again`, { file: assignmentsPath });
  out.end();
  await finished(out);
  await rename(temporary, assignmentsPath);
}
