/**
 * Throughput of parseRows on a numeric CSV: ~50 MB, 11 columns of random floats with about six
 * significant digits (the shape of a typical standardized data set), all 11 columns selected.
 * Run directly with `npx tsx bench/csv.ts`.
 */
import { pathToFileURL } from 'node:url';
import { parseRows } from '../lib/data/csv.js';

const COLUMNS = 11;
const TARGET_BYTES = 50 * 1024 * 1024;

/** A deterministic generator (mulberry32), so runs are comparable. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Data lines only (no header): `COLUMNS` values per line, e.g. `-12.3457,0.000412345,…`. */
export function makeNumericCsv(targetBytes = TARGET_BYTES, seed = 1): Uint8Array {
  const next = random(seed);
  const lines: string[] = [];
  let bytes = 0;
  while (bytes < targetBytes) {
    const fields: string[] = [];
    for (let j = 0; j < COLUMNS; j++) {
      const scale = 10 ** Math.floor(next() * 6 - 3);
      fields.push(((next() * 2 - 1) * scale).toPrecision(6));
    }
    const line = fields.join(',');
    lines.push(line);
    bytes += line.length + 1;
  }
  return new TextEncoder().encode(lines.join('\n') + '\n');
}

/** Best of a few timed parses (after one warm-up) of the generated CSV. */
export async function benchCsv(): Promise<{ mbPerSecond: number; rows: number }> {
  const bytes = makeNumericCsv();
  const header = Array.from({ length: COLUMNS }, (_, j) => `x${j}`);
  const options = { file: 'bench.csv', header, select: header.map((column) => ({ column, kind: 'number' as const })) };
  let rows = parseRows(bytes, options).rows;
  let best = Infinity;
  for (let run = 0; run < 3; run++) {
    const t0 = performance.now();
    rows = parseRows(bytes, options).rows;
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return { mbPerSecond: bytes.length / 1e6 / best, rows };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { mbPerSecond, rows } = await benchCsv();
  console.log(`parseRows: ${mbPerSecond.toFixed(1)} MB/s over ${rows} rows × ${COLUMNS} columns`);
}
