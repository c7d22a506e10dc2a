/**
 * Reading a local CSV file from its start in chunks of whole records, for the passes that stream
 * a file once (predict, and joining assignments back to their lines): memory stays at a few
 * chunks whatever the file's size. Unlike byte-range shards, a reader that starts at the first
 * data line always knows where records start, so quoted fields with line breaks are cut correctly.
 */
import { open } from 'node:fs/promises';
import type { Delimiter } from '../config.js';
import { parseRows } from './csv.js';

const QUOTE = 34;
const LF = 10;

export interface RecordChunkOptions {
  /** Byte offset of the first data line (parseHeader's dataStart). */
  dataStart: number;
  /** Header columns and delimiter: where a record ends depends on its quoted fields. */
  header: readonly string[];
  delimiter: Delimiter;
  /** About this many bytes a chunk. @default 4 MiB */
  chunkBytes?: number;
}

/**
 * Yields the data of `path` from `dataStart` as chunks that each end at a record boundary (the last
 * may end without a newline). The parse of a chunk knows its physical lines (lineCount); the
 * caller numbers lines by adding them up (the first data line is line 2). A chunk without a '"' is cut after its last '\n'; one with quotes is
 * cut where the parser's partial mode says the last complete record ends. A record longer than
 * 16 chunks (a quote that never closes, say) is cut at a line break instead, where the parser then
 * reports its pieces.
 */
export async function* readRecordChunks(path: string, options: RecordChunkOptions): AsyncGenerator<Uint8Array> {
  const chunkBytes = options.chunkBytes ?? 4 * 1024 * 1024;
  const file = await open(path, 'r');
  try {
    let position = options.dataStart;
    let carry: Uint8Array = new Uint8Array(0);
    for (;;) {
      const block = new Uint8Array(chunkBytes);
      const { bytesRead } = await file.read(block, 0, chunkBytes, position);
      position += bytesRead;
      const atEnd = bytesRead === 0;
      const bytes = carry.length === 0 ? block.subarray(0, bytesRead) : concat(carry, block.subarray(0, bytesRead));
      if (bytes.length === 0) return;
      let cut = bytes.length;
      if (!atEnd) {
        cut = bytes.lastIndexOf(LF) + 1;
        if (cut > 0 && bytes.indexOf(QUOTE) >= 0 && bytes.length <= 16 * chunkBytes)
          cut = parseRows(bytes, { file: path, header: options.header, select: [], delimiter: options.delimiter, partial: true }).consumed;
      }
      if (cut === 0) {
        carry = bytes;
        continue;
      }
      // Keep the rest before handing the chunk out: its buffer may move to another thread.
      carry = bytes.slice(cut);
      yield bytes.subarray(0, cut);
      if (atEnd && carry.length === 0) return;
    }
  } finally {
    await file.close();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
