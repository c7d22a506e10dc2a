import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, tempDir } from './support/cli.js';

describe('clusterwise fit: bad input gets a clear error and a non-zero exit', () => {
  const dir = tempDir();
  const out = path.join(dir, 'out');
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('missing file', () => {
    const r = runCli(['fit', path.join(dir, 'nope.csv'), '--target', 'y', '--out', out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('nope.csv: file not found');
  });

  it('unknown target column', () => {
    const r = runCli(['fit', 'examples/forum.csv', '--target', 'yy', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('examples/forum.csv: unknown target column "yy" (columns: x1, x2, y)');
  });

  it('empty file', () => {
    const file = write('empty.csv', '');
    const r = runCli(['fit', file, '--target', 'y', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/empty\.csv.*empty/);
  });

  it('header only', () => {
    const file = write('header.csv', 'x,y\n');
    const r = runCli(['fit', file, '--target', 'y', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('header.csv:2: no data rows after the header');
  });

  it('no usable rows', () => {
    const file = write('text.csv', 'x,y\n1,a\n2,b\n3,c\n');
    const r = runCli(['fit', file, '--target', 'y', '--columns', 'x', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('text.csv: no usable rows');
    expect(r.stderr).toContain('column "y": not a number');
  });

  it('a bernoulli target that is not 0/1', () => {
    const lines = ['x,y'];
    for (let i = 0; i < 200; i++) lines.push(`${i / 10},${i % 3}`);
    const file = write('three.csv', lines.join('\n') + '\n');
    const r = runCli(['fit', file, '--target', 'y', '--family', 'bernoulli', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/rows are unusable/);
    expect(r.stderr).toContain('three.csv:4: column "y": "2" not 0/1 or true/false');
  });

  it('an unknown flag value', () => {
    const r = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--family', 'poisson']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("option '--family <family>' argument 'poisson' is invalid. Allowed choices are gaussian, bernoulli.");
  });

  it('an unknown option', () => {
    const r = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--colour', 'red']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--colour'");
  });

  it('skips and reports a few bad rows, and still fits', () => {
    const good = readFileSync('examples/forum.csv', 'utf8').trimEnd().split('\n');
    good.splice(5, 0, '0.1,NA,3', '0.2,abc,1');
    const file = write('some-bad.csv', good.join('\n') + '\n');
    const r = runCli(['fit', file, '--target', 'y', '--out', out, '--workers', '0']);
    expect(r.code).toBe(0);
    const posterior = JSON.parse(readFileSync(path.join(out, 'posterior.json'), 'utf8'));
    expect(posterior.rows).toBe(1000);
    expect(posterior.skippedRows).toBe(2);
    expect(posterior.skipped.map((s: { line: number; column: string; reason: string }) => [s.line, s.column, s.reason])).toEqual([
      [6, 'x2', 'missing value'],
      [7, 'x2', 'not a number'],
    ]);
  });
});

describe('clusterwise predict', () => {
  it('scores new rows: every input line comes back with cluster, probability, prediction and its sd', () => {
    const dir = tempDir();
    const fit = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', dir, '--workers', '0']);
    expect(fit.code).toBe(0);
    // Points at the four cluster centres (no target column needed), one unusable row.
    const input = path.join(dir, 'new.csv');
    writeFileSync(input, 'x1,x2\n1,1\n1,-1\n-1,1\n-1,-1\n0.5,abc\n');
    const out = path.join(dir, 'scored.csv');
    const r = runCli(['predict', path.join(dir, 'posterior.json'), input, '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('1 rows could not be scored');
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('x1,x2,cluster,cluster_probability,prediction,prediction_sd');
    expect(lines).toHaveLength(6);
    const truth = [1 + 4, 3 - 2, -4 + 1, 3 + 2]; // coeffᵀx at (1,1), (1,−1), (−1,1), (−1,−1)
    const clusters = new Set<string>();
    lines.slice(1, 5).forEach((line, i) => {
      const [, , cluster, probability, prediction, sd] = line.split(',');
      clusters.add(cluster);
      expect(Number(probability)).toBeGreaterThan(0.99);
      expect(Math.abs(Number(prediction) - truth[i])).toBeLessThan(0.1);
      expect(Number(sd)).toBeGreaterThan(0);
      expect(Number(sd)).toBeLessThan(0.5);
    });
    expect(clusters.size).toBe(4);
    expect(lines[5]).toBe('0.5,abc,,,,');
  });

  it('names a posterior file that is missing', () => {
    const r = runCli(['predict', 'nope/posterior.json', 'examples/forum.csv']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nope/posterior.json: file not found');
  });
});

describe('clusterwise fit over several files', () => {
  it('reads every row of every file once, and names a file whose header lacks a used column', () => {
    const dir = tempDir();
    const [header, ...rows] = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
    const a = path.join(dir, 'a.csv');
    const b = path.join(dir, 'b.csv');
    writeFileSync(a, [header, ...rows.slice(0, 600)].join('\n') + '\n');
    writeFileSync(b, [header, ...rows.slice(600)].join('\r\n') + '\r\n'); // CRLF in the second
    const ok = runCli(['fit', a, b, '--target', 'y', '--out', path.join(dir, 'out'), '--workers', '0']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'out', 'posterior.json'), 'utf8')).rows).toBe(1000);

    const c = path.join(dir, 'c.csv');
    writeFileSync(c, 'x1,y\n1,2\n');
    const bad = runCli(['fit', a, c, '--target', 'y', '--columns', 'x1,x2', '--out', path.join(dir, 'out2'), '--workers', '0']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${c}: unknown clustering column "x2" (columns: x1, y)`);
  });
});
