import { describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/config.js';
import { parseRows } from '../lib/data/csv.js';
import { MAX_STANDARDIZED, planColumns, standardizationOf, toBatch, type DataFile } from '../lib/data/dataset.js';

const encode = (text: string) => new TextEncoder().encode(text);

function file(columns: string[], headerLine = `${columns.join(',')}\n`): DataFile {
  return { key: 'd.csv', name: 'd.csv', size: 0, etag: '', dataStart: headerLine.length, columns, delimiter: ',', headerLine };
}

/** Plan, parse and standardize `rows` (data lines of a file with header x,c,y). */
function prepare(lines: string[], config: Record<string, unknown> = {}) {
  const f = file(['x', 'c', 'y']);
  const bytes = encode(lines.join('\n') + '\n');
  const plan = planColumns(parseConfig({ target: 'y', columns: ['x', 'c'], ...config }), [f], bytes);
  const parsed = parseRows(bytes, { file: 'd.csv', header: f.columns, select: plan.select, firstLine: 2 });
  return { plan, parsed };
}

describe('standardization', () => {
  const rows = (c: (i: number) => string, y: (i: number) => string = (i) => String(i % 7)) =>
    Array.from({ length: 200 }, (_, i) => `${i / 10},${c(i)},${y(i)}`);

  it('rejects a constant column, also when rounding leaves a tiny deviation, naming file and column', () => {
    const { plan, parsed } = prepare(rows(() => '5'));
    expect(() => standardizationOf(plan, 'gaussian', parsed, 'd.csv')).toThrow(
      'd.csv: column "c" is constant in the 200 sampled rows (every value is 5); drop it from the columns',
    );
    // 0.3 and 0.1 + 0.2 differ only by rounding (5.6e-17).
    const residue = prepare(rows((i) => (i % 2 ? '0.3' : String(0.1 + 0.2))));
    expect(() => standardizationOf(residue.plan, 'gaussian', residue.parsed, 'd.csv')).toThrow(
      'd.csv: column "c" is constant in the 200 sampled rows (its deviation is below 1e-12 of its magnitude)',
    );
  });

  it('rejects a constant target', () => {
    const { plan, parsed } = prepare(rows((i) => String(i % 3), () => '2.5'));
    expect(() => standardizationOf(plan, 'gaussian', parsed, 'd.csv')).toThrow(
      'd.csv: the target column "y" is constant in the 200 sampled rows (every value is 2.5); there is nothing to regress',
    );
  });

  it('accepts a column of values near 1e-300 and one near 1e140', () => {
    const { plan, parsed } = prepare(rows((i) => `${1 + (i % 5)}e-300`, (i) => `${1 + (i % 3)}e140`));
    const std = standardizationOf(plan, 'gaussian', parsed, 'd.csv');
    expect(std.xSd[1]).toBeGreaterThan(1e-301);
    expect(std.ySd).toBeGreaterThan(1e139);
    const batch = toBatch(plan, std, parsed);
    expect(batch.n).toBe(200);
    expect([...batch.x, ...batch.y].every((v) => Number.isFinite(v) && Math.abs(v) < 10)).toBe(true);
  });

  it('skips, with file, line, column and reason, a row far beyond what the float32 kernel can square', () => {
    const sample = prepare(rows((i) => String(i % 3)));
    const std = standardizationOf(sample.plan, 'gaussian', sample.parsed, 'd.csv');
    const shard = prepare(['1,2,3', '1,1e140,3', '2,1,4', '3,2,1e20']);
    const batch = toBatch(shard.plan, std, shard.parsed);
    expect(batch.n).toBe(2);
    expect([...batch.x, ...batch.u, ...batch.y].every(Number.isFinite)).toBe(true);
    expect(shard.parsed.rows).toBe(2);
    expect(shard.parsed.skippedCount).toBe(2);
    expect([...shard.parsed.rowLine]).toEqual([0, 2]);
    expect(shard.parsed.skipped).toEqual([
      { file: 'd.csv', line: 3, column: 'c', value: '1e+140', reason: `more than ${MAX_STANDARDIZED} standard deviations from the sample mean` },
      { file: 'd.csv', line: 5, column: 'y', value: '100000000000000000000', reason: `more than ${MAX_STANDARDIZED} standard deviations from the sample mean` },
    ]);
  });
});

describe('planColumns', () => {
  it('leaves the id column out of the default columns, and applies a configured delimiter to every header', () => {
    const f = file(['id;x;y'], 'id;x;y\n');
    const plan = planColumns(parseConfig({ target: 'y', id: 'id', delimiter: ';' }), [f], encode('7;1.5;2\n8;2.5;3\n'));
    expect(f.columns).toEqual(['id', 'x', 'y']);
    expect(plan.x).toEqual(['x']);
  });

  it('with no numeric column to use, says why of each, citing the first value that is not a number', () => {
    const f = file(['a', 'b', 'y']);
    expect(() => planColumns(parseConfig({ target: 'y' }), [f], encode('1e400x,,1\nfoo,,2\n'))).toThrow(
      'd.csv: no numeric columns besides the target "y" to cluster or regress on (a: "1e400x" on line 2: not a number; b: no values; list text columns in "categorical" (--categorical) to use them as categories)',
    );
    expect(() => planColumns(parseConfig({ target: 'y' }), [file(['y'])], encode('1\n2\n'))).toThrow('(the header names no other column)');
  });

  it("tells a column with no values in the first file's first lines by the sample's other windows", () => {
    const first = file(['x1', 'x2', 'y']);
    const other = { ...file(['x2', 'x1', 'y']), key: 'e.csv', name: 'e.csv' };
    const firstBytes = encode('1,,2\n2,,3\n');
    const config = parseConfig({ target: 'y' });
    // Without the sample x2 cannot be told, and is left out for now ...
    expect(planColumns(config, [first, other], firstBytes).x).toEqual(['x1']);
    // ... with it, numbers elsewhere make it a numeric column in both roles, not a category.
    const numbers = planColumns(config, [first, other], firstBytes, [{ file: other, bytes: encode('0.5,1,2\n1.5,2,3\n') }]);
    expect(numbers.x).toEqual(['x1', 'x2']);
    expect(numbers.r).toEqual(['x1', 'x2']);
    expect(numbers.select.find((s) => s.column === 'x2')?.kind).toBe('number');
    // A named column with no values in the first lines is numeric when the sample says so.
    const named = planColumns(parseConfig({ target: 'y', columns: ['x1', 'x2'] }), [first, other], firstBytes, [{ file: other, bytes: encode('0.5,1,2\n') }]);
    expect(named.xc).toBeUndefined();
    // Text elsewhere leaves it out by default, as any text column.
    expect(planColumns(config, [first, other], firstBytes, [{ file: other, bytes: encode('a,1,2\nb,2,3\n') }]).x).toEqual(['x1']);
  });
});
