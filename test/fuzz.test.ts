/**
 * Issue 7's fuzz property: mutated CSVs never crash with a stack trace, never exit 0 with a NaN or
 * a null in posterior.json, and the rows used plus the rows skipped equal the data records.
 * The command runs in this process (main()), so each case costs a small fit, not a Node start.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../cli/main.js';
import { badValues } from './support/posterior-check.js';

const dir = mkdtempSync(path.join(tmpdir(), 'clusterwise-fuzz-'));
const config = path.join(dir, 'config.json');

/** 45 rows of three clusters, each with its own line: y = a + b x1 + noise. */
function cleanRows(): string[] {
  const rows: string[] = [];
  for (let i = 0; i < 45; i++) {
    const c = i % 3;
    const x1 = c * 3 + ((i * 7) % 11) / 10;
    const x2 = -c * 2 + ((i * 5) % 13) / 10;
    rows.push(`${x1.toFixed(3)},${x2.toFixed(3)},${(c + (c + 1) * x1 + ((i * 3) % 7) / 50).toFixed(4)}`);
  }
  return rows;
}

const VALUES = ['', 'NA', 'abc', '1e200', '1e308', '-1e400', '"2.5"', '"a\nb"', ' ', '0x10', 'Infinity', '"', '1,2', '1e-300', '999999999999'];

/** One mutation of the data lines (the header stays, so the file remains about these columns). */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('value' as const), row: fc.nat(), field: fc.nat(2), value: fc.constantFrom(...VALUES) }),
  fc.record({ kind: fc.constant('insert' as const), row: fc.nat(), text: fc.constantFrom('', '   ', '1,2', '1,2,3,4', '"x', 'x"', ',,', '\r') }),
  fc.record({ kind: fc.constant('delete' as const), row: fc.nat() }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), text: fc.constantFrom('"', ',', '\n', '\r\n', '', ';') }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function apply(rows: string[], m: Mutation): string[] {
  const out = [...rows];
  const at = (n: number) => (out.length ? n % out.length : 0);
  if (m.kind === 'value' && out.length) {
    const i = at(m.row);
    const fields = out[i].split(',');
    fields[m.field % fields.length] = m.value;
    out[i] = fields.join(',');
  } else if (m.kind === 'insert') out.splice(at(m.row), 0, m.text);
  else if (m.kind === 'delete' && out.length) out.splice(at(m.row), 1);
  else if (m.kind === 'byte') {
    const text = out.join('\n');
    const p = text.length ? m.at % text.length : 0;
    return (text.slice(0, p) + m.text + text.slice(p)).split('\n');
  }
  return out;
}

/**
 * The non-blank records of data text under the documented rules (lib/data/csv.ts): a field that
 * starts with '"' runs to its closing quote, line breaks included; a quote that never closes
 * leaves its physical line a record of its own. Written independently of the parser, as an oracle.
 */
function countRecords(text: string): number {
  let records = 0;
  let pos = 0;
  while (pos < text.length) {
    let end = -1;
    let p = pos;
    for (;;) {
      while (text[p] === ' ' || text[p] === '\t') p++;
      if (text[p] === '"') {
        let q = p + 1;
        for (; q < text.length; q++) if (text[q] === '"') { if (text[q + 1] === '"') q++; else break; }
        if (q >= text.length) { end = text.indexOf('\n', pos); break; } // never closes
        p = q + 1;
      }
      while (p < text.length && text[p] !== ',' && text[p] !== '\n') p++;
      if (p >= text.length || text[p] === '\n') { end = p; break; }
      p++;
    }
    if (end < 0) end = text.length;
    if (text.slice(pos, end).replace(/[ \t\r]/g, '') !== '') records++;
    pos = end + 1;
  }
  return records;
}

let stderr = '';
beforeAll(() => {
  writeFileSync(config, JSON.stringify({ target: 'y', components: 4, schedule: { restarts: 1, maxSweeps: 5, maxSkippedShare: 1 } }));
  vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void (stderr += `${args.join(' ')}\n`));
  vi.spyOn(console, 'log').mockImplementation(() => {});
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterAll(() => vi.restoreAllMocks());

describe('fuzzed CSVs (property)', () => {
  it('end with a clean error, or with a finite posterior whose used + skipped rows are the data records', async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.boolean(), async (mutations, crlf) => {
        const rows = mutations.reduce(apply, cleanRows());
        const data = rows.join(crlf ? '\r\n' : '\n') + '\n';
        const file = path.join(dir, `case-${runs}.csv`);
        const out = path.join(dir, `out-${runs++}`);
        writeFileSync(file, `x1,x2,y\n${data}`);
        stderr = '';
        const code = await main(['node', 'clusterwise', 'fit', file, '--config', config, '--out', out, '--workers', '0', '--backend', 'reference']);
        expect(stderr).not.toMatch(/\n\s+at .*\(/); // no stack trace
        if (code !== 0) {
          expect(stderr).toMatch(/^clusterwise: \S/);
          return;
        }
        const text = readFileSync(path.join(out, 'posterior.json'), 'utf8');
        expect(badValues(text)).toEqual([]);
        const posterior = JSON.parse(text);
        expect(posterior.rows + posterior.skippedRows).toBe(countRecords(data.replaceAll('\r\n', '\n')));
      }),
      { numRuns: 40, seed: 7 },
    );
  }, 240_000);
});
