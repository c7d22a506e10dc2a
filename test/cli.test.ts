import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterTable } from '../cli/main.js';
import { progressPrinter } from '../cli/progress.js';
import { parseConfig } from '../lib/config.js';
import { fitLocal } from '../lib/local/runner.js';
import { createRandom } from '../lib/math/random.js';
import type { PlanPhase } from '../lib/pipeline/run.js';
import { runCli, tempDir } from './support/cli.js';
import { badValues } from './support/posterior-check.js';

describe('a fit that fails while the helper thread works', () => {
  it('reports its error: the process does not end before it (a stopping thread holds it)', () => {
    const script = path.resolve('test/support/late-planning-failure.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, tempDir()], { encoding: 'utf8', timeout: 120_000 });
    expect({ code: r.status, stdout: r.stdout.trim() }).toEqual({ code: 0, stdout: 'failed: a late planning failure' });
  });
});

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

  it('one usable row: says so, and what was skipped', () => {
    const file = write('single.csv', 'x,y\n1,2\n2,b\n');
    const r = runCli(['fit', file, '--target', 'y', '--columns', 'x', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('single.csv: only 1 usable row (a fit needs at least 2) (first: ');
    expect(r.stderr).toContain('single.csv:3: column "y": not a number)');
  });

  it('a bernoulli target that is not 0/1', () => {
    const lines = ['x,y'];
    for (let i = 0; i < 200; i++) lines.push(`${i / 10},${i % 3}`);
    const file = write('three.csv', lines.join('\n') + '\n');
    const r = runCli(['fit', file, '--target', 'y', '--family', 'bernoulli', '--out', out, '--workers', '0']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/rows are unusable/);
    expect(r.stderr).toContain('three.csv:4: column "y": "2" is not 0/1 or true/false');
    // A row that is wrong as a whole is cited without a column.
    const short = write('short.csv', ['x1,x2,y', '1,2', ...Array.from({ length: 40 }, (_, i) => `${i},${(i * 7) % 11},${(i * 3) % 5}`)].join('\n') + '\n');
    const s = runCli(['fit', short, '--target', 'y', '--out', out, '--workers', '0']);
    expect(s.code).not.toBe(0);
    expect(s.stderr).toContain('rows are unusable (more than 1%); first: ');
    expect(s.stderr).toContain('short.csv:2: expected 3 fields, found 2');
  });

  it('an unknown flag value', () => {
    const r = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--family', 'gamma']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("option '--family <family>' argument 'gamma' is invalid. Allowed choices are gaussian, bernoulli, poisson, multinomial.");
  });

  it('an unknown option', () => {
    const r = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--colour', 'red']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--colour'");
  });

  it('skips and reports a few bad rows, integrates a missing covariate out, and still fits', () => {
    const good = readFileSync('examples/forum.csv', 'utf8').trimEnd().split('\n');
    good.splice(5, 0, '0.1,NA,3', '0.2,abc,1', '0.3,1,');
    const file = write('some-bad.csv', good.join('\n') + '\n');
    const r = runCli(['fit', file, '--target', 'y', '--out', out, '--workers', '0']);
    expect(r.code).toBe(0);
    const posterior = JSON.parse(readFileSync(path.join(out, 'posterior.json'), 'utf8'));
    // The missing x2 is integrated out (docs/model.md §18); a value that is not a number and a missing target skip their rows.
    expect(posterior.rows).toBe(1001);
    expect(posterior.missingValues).toEqual({ x2: 1 });
    expect(r.stdout).toContain('missing values integrated out, not skipped: x2 1 (0.10%)');
    expect(posterior.skippedRows).toBe(2);
    expect(posterior.skipped.map((s: { line: number; column: string; reason: string }) => [s.line, s.column, s.reason])).toEqual([
      [7, 'x2', 'not a number'],
      [8, 'y', 'missing value'],
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
    expect(r.stderr).toContain(`${input}: 1 row could not be scored`);
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
    // The unscored row is named by file, line and column.
    expect(r.stderr).toContain(`${input}:6: column "x2": "abc" is not a number`);
  });

  it('names a posterior file that is missing', () => {
    const r = runCli(['predict', 'nope/posterior.json', 'examples/forum.csv']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nope/posterior.json: file not found');
  });

  it('never overwrites its input, and names an --out it cannot write, leaving an existing one as it was', () => {
    const dir = tempDir();
    expect(runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', dir, '--workers', '0']).code).toBe(0);
    const posterior = path.join(dir, 'posterior.json');
    const input = path.join(dir, 'rows.csv');
    const rows = readFileSync('examples/forum.csv', 'utf8');
    writeFileSync(input, rows);
    const same = runCli(['predict', posterior, input, '--out', input]);
    expect(same.code).toBe(1);
    expect(same.stderr).toContain(`${input}: --out is the input ${input}`);
    expect(readFileSync(input, 'utf8')).toBe(rows);
    const missingFolder = path.join(dir, 'no', 'such', 'out.csv');
    const unwritable = runCli(['predict', posterior, input, '--out', missingFolder]);
    expect(unwritable.code).toBe(1);
    expect(unwritable.stderr.trim()).toBe(`clusterwise: ${missingFolder}: cannot write the predictions: ENOENT`);
    expect(runCli(['predict', posterior, input, '--out', dir]).stderr).toContain(`${dir}: --out is a folder`);
    // A run that fails (a column missing) leaves the previous output whole.
    const out = path.join(dir, 'scored.csv');
    expect(runCli(['predict', posterior, input, '--out', out]).code).toBe(0);
    const before = readFileSync(out, 'utf8');
    const x1Only = path.join(dir, 'x1.csv');
    writeFileSync(x1Only, 'x1\n1\n');
    expect(runCli(['predict', posterior, x1Only, '--out', out]).code).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe(before);
  });

  // @tensorflow/tfjs-node is an optional dependency whose install downloads libtensorflow: absent here.
  it.skipIf(existsSync('node_modules/@tensorflow/tfjs-node'))('a kernel backend that cannot load fails fit and predict with its reason, once, and predict writes nothing', () => {
    const dir = tempDir();
    const failed = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', dir, '--workers', '0', '--backend', 'tensorflow']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("clusterwise: kernel backend 'tensorflow' is unavailable");
    expect(runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', dir, '--workers', '0']).code).toBe(0);
    const r = runCli(['predict', path.join(dir, 'posterior.json'), 'examples/forum.csv', '--backend', 'tensorflow']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^clusterwise: kernel backend 'tensorflow' is unavailable/)]);
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

/** A quick fit's settings: one restart (the tests check behaviour, not the optimum). */
function quickConfig(dir: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, `quick-${Object.keys(extra).join('-') || 'base'}.json`);
  writeFileSync(file, JSON.stringify({ schedule: { restarts: 1 }, ...extra }));
  return file;
}

describe('clusterwise fit: nothing silently wrong (issue 7)', () => {
  const dir = tempDir();
  const forum = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
  const write = (name: string, lines: string[]) => {
    const file = path.join(dir, name);
    writeFileSync(file, lines.join('\n') + '\n');
    return file;
  };
  const fit = (args: string[]) => runCli(['fit', ...args, '--out', path.join(dir, 'out'), '--workers', '0']);

  it('a constant column, and a constant target, are errors naming the file and the column', () => {
    const constant = write('c.csv', forum.map((l, i) => (i === 0 ? l.replace('x2,', 'x2,c,') : l.replace(/^([^,]*,[^,]*,)/, '$15,'))));
    const r = fit([constant, '--target', 'y']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${constant}: column "c" is constant in the 1000 sampled rows (every value is 5); drop it from the columns`);
    const flat = write('flat.csv', forum.map((l, i) => (i === 0 ? l : l.replace(/[^,]*$/, '2.5'))));
    const t = fit([flat, '--target', 'y']);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain(`${flat}: the target column "y" is constant`);
  });

  it('categorical columns: one with a single level, or more levels than a category has, is an error naming it; --categorical names used columns', () => {
    const single = write('single.csv', forum.map((l, i) => (i === 0 ? `${l},g` : `${l},only`)));
    const r = fit([single, '--target', 'y', '--categorical', 'g']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${single}: column "g": categorical column "g" has the single level "only" in the 1000 sampled rows; drop it from the columns`);
    const ids = write('ids.csv', [`${forum[0]},name`, ...Array.from({ length: 1500 }, (_, i) => `${forum[1 + (i % 999)]},n${i}`)]);
    const t = fit([ids, '--target', 'y', '--columns', 'x1,name']);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain('categorical column "name" has more than 1000 distinct values in the sample');
    const unused = fit([single, '--target', 'y', '--columns', 'x1', '--categorical', 'g']);
    expect(unused.code).toBe(1);
    expect(unused.stderr).toContain('categorical: "g" is neither a clustering nor a regression column');
  });

  it('a row with a value whose square overflows is skipped with its line and reason; the fit stays finite', () => {
    const lines = [...forum];
    lines.splice(3, 0, '1e200,0.5,1', '0.5,1.4e154,1', '0.5,0.5,1e308');
    const file = write('huge.csv', lines);
    const r = fit([file, '--target', 'y', '--config', quickConfig(dir, { schedule: { restarts: 1, maxSkippedShare: 0.01 } })]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('3 of 1003 rows skipped');
    expect(r.stdout).toContain(`${file}:4: column "x1": beyond ±1e150 (its square would overflow) ("1e200")`);
    const posterior = readFileSync(path.join(dir, 'out', 'posterior.json'), 'utf8');
    expect(badValues(posterior)).toEqual([]);
    expect(JSON.parse(posterior)).toMatchObject({ rows: 1000, skippedRows: 3 });
  });

  it('the same file given twice is an error naming it', () => {
    const r = fit(['examples/forum.csv', './examples/../examples/forum.csv', '--target', 'y']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('./examples/../examples/forum.csv: given twice (also as examples/forum.csv)');
  });

  it('a record with a quoted line break is read once (RFC 4180)', () => {
    const lines = ['name,x1,x2,y', ...forum.slice(1).map((l, i) => (i === 4 ? `"two\nlines",${l}` : `n${i},${l}`))];
    const file = write('quoted.csv', lines);
    const r = fit([file, '--target', 'y', '--columns', 'x1,x2', '--config', quickConfig(dir)]);
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'out', 'posterior.json'), 'utf8'))).toMatchObject({ rows: 1000, skippedRows: 0 });
  });

  it('settings beyond their bounds are errors that state the bound', () => {
    const r = fit(['examples/forum.csv', '--target', 'y', '--config', quickConfig(dir, { schedule: { maxSweeps: 1e9, tolerance: 1e-300, restarts: 1e6, sampleRows: 1e8, shardRows: 10 } })]);
    expect(r.code).toBe(1);
    for (const bound of ['schedule.maxSweeps: must be at most 500', 'schedule.tolerance: must be at least 1e-12', 'schedule.restarts: must be at most 20', 'schedule.sampleRows: must be at most 200000', 'schedule.shardRows: must be at least 40'])
      expect(r.stderr).toContain(bound);
    const w = fit(['examples/forum.csv', '--target', 'y', '--workers', '1000']);
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/--workers must be at most \d+ \(2 × the \d+ cores here\), got 1000/);
  });

  it('config files: errors name the file, unknown keys get a suggestion, the file may name the target', () => {
    const config = (name: string, text: string) => {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    const typo = config('typo.json', '{"target": "y", "compnents": 4, "priors": {"meanPrecison": 2}}');
    const r = fit(['examples/forum.csv', '--config', typo]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${typo}: invalid model configuration:`);
    expect(r.stderr).toContain('compnents: unknown setting; did you mean "components"?');
    expect(r.stderr).toContain('priors.meanPrecison: unknown setting; did you mean "meanPrecision"?');
    for (const text of ['[]', 'null']) {
      const bad = config(`bad-${text}.json`, text);
      const b = fit(['examples/forum.csv', '--target', 'y', '--config', bad]);
      expect(b.code).toBe(1);
      expect(b.stderr).toContain(`${bad}: invalid model configuration: must be a JSON object`);
    }
    const duplicate = fit(['examples/forum.csv', '--target', 'y', '--columns', 'x1,x1']);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain('command line: invalid model configuration: columns: lists a column more than once');
    const hex = fit(['examples/forum.csv', '--target', 'y', '--components', '0x10']);
    expect(hex.code).toBe(2);
    expect(hex.stderr).toContain('--components must be a whole number written in digits, got "0x10"');
    const noTarget = fit(['examples/forum.csv']);
    expect(noTarget.code).toBe(1);
    expect(noTarget.stderr).toContain('--target is required');
    const named = config('named.json', '{"target": "y", "columns": ["x1", "x2"], "schedule": {"restarts": 1}}');
    const ok = fit(['examples/forum.csv', '--config', named]);
    expect(ok.code).toBe(0);
    // Names are trimmed as the header's are: a stray space finds the column, not "unknown column".
    const spaced = fit(['examples/forum.csv', '--target', ' y ', '--columns', ' x1 , x2', '--config', named]);
    expect(spaced.stderr).not.toContain('clusterwise:');
    expect(spaced.code).toBe(0);
  });

  it('a second fit into the same --out fails while the first holds it; a lock left by a dead process is taken over', () => {
    const out = path.join(dir, 'locked');
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, '.clusterwise.lock'), `${process.pid}\n`); // this test's process: alive
    const busy = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', out, '--workers', '0']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain(`${out}: another clusterwise fit (pid ${process.pid}) is writing there`);
    writeFileSync(path.join(out, '.clusterwise.lock'), '999999999\n'); // no such process
    const ok = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', out, '--workers', '0', '--config', quickConfig(dir)]);
    expect(ok.code).toBe(0);
    expect(existsSync(path.join(out, '.clusterwise.lock'))).toBe(false);
  });
});

describe('clusterwise: a CLI that explains itself (issue 10)', () => {
  const dir = tempDir();

  it('--version, and defaults in the help', () => {
    const v = runCli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(JSON.parse(readFileSync('package.json', 'utf8')).version);
    const help = runCli(['fit', '--help']).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('(default: gaussian)');
    expect(help).toContain('(default: 20)');
    expect(help).toContain('(default: stick-breaking)');
  });

  it('progress for every phase, each phase\'s last figure in plain mode, skipped rows on the terminal, no banners', () => {
    const lines = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
    lines.splice(2, 0, '0.1,abc,1');
    const file = path.join(dir, 'one-bad.csv');
    writeFileSync(file, lines.join('\n') + '\n');
    const r = runCli(['fit', file, '--target', 'y', '--out', path.join(dir, 'out'), '--workers', '1', '--backend', 'cpu', '--config', quickConfig(dir)]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^read the sample: 1000 rows \| [\d.]+ s elapsed$/m);
    expect(r.stderr).toMatch(/^initialized: best of 1 restarts \| [\d.]+ s elapsed$/m);
    expect(r.stderr).toMatch(/^sweep 1 of 50: ELBO -[\d.]+, 1000 rows, 1 skipped \| /m);
    expect(r.stderr).toMatch(/^sweep 2 of 50: ELBO -[\d.]+, change [\d.e+-]+ \(tolerance 0\.000001\)/m);
    expect(r.stderr).not.toContain('Hi, looks like you are running TensorFlow.js');
    expect(r.stdout).toContain(`1 of 1001 rows skipped (0.10%), e.g.:\n  ${file}:3: column "x2": "abc" is not a number`);
  });

  it('; and tab files are detected, --delimiter settles a tie, and --id names rows in assignments.csv', () => {
    const [head, ...rows] = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
    const semi = path.join(dir, 'semi.csv');
    writeFileSync(semi, [`id;${head.replaceAll(',', ';')}`, ...rows.map((l, i) => `${1000 + i};${l.replaceAll(',', ';')}`)].join('\n') + '\n');
    const out = path.join(dir, 'ids');
    const r = runCli(['fit', semi, '--target', 'y', '--id', 'id', '--assign', '--out', out, '--workers', '0', '--config', quickConfig(dir)]);
    expect(r.code).toBe(0);
    const posterior = JSON.parse(readFileSync(path.join(out, 'posterior.json'), 'utf8'));
    expect(posterior.columns).toEqual(['x1', 'x2']); // the numeric id is not a covariate
    const assignments = readFileSync(path.join(out, 'assignments.csv'), 'utf8').trim().split('\n');
    expect(assignments[0]).toBe('file,line,id,cluster,probability');
    expect(assignments).toHaveLength(1001);
    expect(assignments[1]).toMatch(new RegExp(`^${semi},2,1000,\\d,[\\d.]+$`));
    expect(assignments[1000]).toMatch(new RegExp(`^${semi},1001,1999,\\d,`));

    const tab = path.join(dir, 'tab.tsv');
    writeFileSync(tab, [head.replaceAll(',', '\t'), ...rows.map((l) => l.replaceAll(',', '\t'))].join('\n') + '\n');
    const t = runCli(['fit', tab, '--target', 'y', '--out', path.join(dir, 'tab'), '--workers', '0', '--delimiter', 'tab', '--config', quickConfig(dir)]);
    expect(t.code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, 'tab', 'posterior.json'), 'utf8')).rows).toBe(1000);
  });

  it('a cluster table that would wrap is laid out per cluster', () => {
    const component = { weight: 0.5, size: 10, mean: Array.from({ length: 12 }, (_, i) => i), intercept: 1, coefficients: Array.from({ length: 12 }, (_, i) => -i), noiseSd: 0.3 };
    const doc = {
      family: 'gaussian', covariateModel: true,
      columns: Array.from({ length: 12 }, (_, i) => `covariate_${i}`), regressionColumns: Array.from({ length: 12 }, (_, i) => `covariate_${i}`),
      components: [component, component],
    } as unknown as Parameters<typeof clusterTable>[0];
    const wide = clusterTable(doc, 400);
    expect(wide.split('\n')[0]).toMatch(/^cluster\s+weight\s+size\s+mean/);
    const narrow = clusterTable(doc, 80);
    expect(narrow).toContain('cluster 0: weight 0.5, size 10, noise sd 0.3');
    expect(narrow).toContain('covariate_11=11');
    expect(Math.max(...narrow.split('\n').map((l) => l.length))).toBeLessThanOrEqual(80);
  });
});

describe('progress of the initialization', () => {
  it('shows restart i of n on a terminal, and only the phase\'s last figure when piped', () => {
    const written: string[] = [];
    const stream = (isTTY: boolean) => ({ isTTY, columns: 200, write: (t: string) => void written.push(t) }) as unknown as NodeJS.WriteStream;
    const schedule = { tolerance: 1e-6, maxSweeps: 50 };
    const tty = progressPrinter(stream(true), schedule, () => 0);
    for (let done = 0; done <= 3; done++) tty.phase({ phase: 'initialize', done, total: 3 });
    expect(written.join('')).toContain('initializing on the sample: restart 2 of 3');
    expect(written.join('')).toContain('initialized: best of 3 restarts');
    written.length = 0;
    const piped = progressPrinter(stream(false), schedule, () => 0);
    for (let done = 0; done <= 3; done++) piped.phase({ phase: 'initialize', done, total: 3 });
    expect(written).toHaveLength(1);
    expect(written[0]).toMatch(/^initialized: best of 3 restarts \| /);
    // A later fit of the covariate selection says which, so its restarts do not read as a repeat.
    written.length = 0;
    for (let done = 1; done <= 3; done++) piped.phase({ phase: 'initialize', done, total: 3, selection: { fit: 2, columns: 2, candidates: 20 } });
    expect(written).toEqual([expect.stringMatching(/^initialized: best of 3 restarts \(covariate selection, fit 2: 2 of 20 clustering columns relevant\) \| /)]);
  });

  it('a fit whose selection refits on fewer columns reports both fits, the second with its columns', async () => {
    const dir = tempDir('clusterwise-selection-progress-');
    const random = createRandom(3, 0);
    const rows = Array.from({ length: 400 }, (_, i) => {
      const k = i % 2;
      const x1 = (k ? 3 : -3) + random.normal();
      const noise = Array.from({ length: 4 }, () => random.normal());
      return [x1, ...noise, (k ? 2 : -1) * x1 + 0.3 * random.normal()];
    });
    writeFileSync(path.join(dir, 'data.csv'), ['x1,n1,n2,n3,n4,y', ...rows.map((r) => r.map((v) => v.toFixed(5)).join(','))].join('\n') + '\n');
    const phases: PlanPhase[] = [];
    await fitLocal({ files: [path.join(dir, 'data.csv')], config: parseConfig({ target: 'y' }), outDir: path.join(dir, 'out'), workers: 0, onPhase: (p) => void phases.push(p) });
    const finished = phases.filter((p) => p.phase === 'initialize' && p.done === p.total);
    expect(finished.length).toBeGreaterThanOrEqual(2);
    expect(finished[0].selection).toBeUndefined();
    expect(finished[1].selection).toEqual({ fit: 2, columns: 1, candidates: 5 });
  }, 120_000);
});
