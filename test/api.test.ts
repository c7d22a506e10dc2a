/**
 * The library's contract at its edges (lib/api.ts, docs/library.md): what it refuses and how, the
 * same checks as the command line, and rows in memory whatever their column names.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DataError, fit, MAX_THREADS, OutputFolderError, OutputLockedError, predict, type Posterior } from '../lib/index.js';
import { runCli, tempDir } from './support/cli.js';

/** examples/forum.csv as records (1000 rows, four regressions of y on x1, x2). */
const forum = (() => {
  const [header, ...lines] = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
  const columns = header.split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((v, j) => [columns[j], Number(v)])));
})();

// @tensorflow/tfjs-node is an optional dependency whose install downloads libtensorflow: absent here.
const tfjsNodeInstalled = existsSync('node_modules/@tensorflow/tfjs-node');

describe('fit refuses what cannot work, before any work and without taking the process down', () => {
  it('workers: a whole number from 0 to MAX_THREADS, named in the error', async () => {
    for (const workers of ['a', -1, 2.5, MAX_THREADS + 1]) {
      await expect(fit(forum, { target: 'y', workers: workers as number })).rejects.toThrowError(ConfigError);
      await expect(fit(forum, { target: 'y', workers: workers as number })).rejects.toThrowError(/workers: must be a whole number from 0 to/);
    }
  });

  it('backend: an unknown name is a ConfigError naming it', async () => {
    await expect(fit(forum, { target: 'y', backend: 'gpu' as never })).rejects.toThrowError(/backend: must be auto, tensorflow, wasm, cpu, reference, got "gpu"/);
  });

  it.skipIf(tfjsNodeInstalled)('backend: one that cannot load rejects the fit with its reason', async () => {
    await expect(fit(forum, { target: 'y', workers: 0, backend: 'tensorflow' })).rejects.toThrowError(/kernel backend 'tensorflow' is unavailable/);
  });

  it('an outDir that cannot be a folder, and a folder given as data, are errors naming them', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'x');
    await expect(fit(forum, { target: 'y', workers: 0, outDir: '' })).rejects.toThrowError('the output folder is an empty path');
    await expect(fit(forum, { target: 'y', workers: 0, outDir: file })).rejects.toThrowError(OutputFolderError);
    await expect(fit(forum, { target: 'y', workers: 0, outDir: path.join(file, 'out') })).rejects.toThrowError(`${path.join(file, 'out')}: not a folder`);
    await expect(fit(dir, { target: 'y', workers: 0 })).rejects.toThrowError(`${dir}: is a folder, not a CSV file`);
  });

  it('one fit at a time per outDir: a second one at once is refused, the first keeps its own files', async () => {
    const outDir = tempDir();
    const settled = await Promise.allSettled([
      fit(forum, { target: 'y', workers: 0, outDir }),
      fit(forum.slice(0, 500), { target: 'y', workers: 0, outDir }),
    ]);
    const done = settled.filter((s) => s.status === 'fulfilled');
    const refused = settled.filter((s) => s.status === 'rejected');
    expect(done).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0].reason).toBeInstanceOf(OutputLockedError);
    const { posterior, files } = done[0].value;
    expect(JSON.parse(readFileSync(files!.posterior, 'utf8')).rows).toBe(posterior.rows);
    expect(posterior.rows).toBe(settled[0] === done[0] ? 1000 : 500);
    // Released: the folder takes the next fit.
    await expect(fit(forum.slice(0, 500), { target: 'y', workers: 0, outDir })).resolves.toMatchObject({ posterior: { rows: 500 } });
  }, 120_000);
});

describe('rows in memory are read with the delimiter they were written with', () => {
  it('a column name holding ; or | and a delimiter setting (for CSV files) change nothing', async () => {
    const renamed = forum.map(({ x1, x2, y }) => ({ 'x1;usd': x1, 'x2|eur': x2, y }));
    const plain = await fit(forum, { target: 'y', workers: 0, seed: 3 });
    const odd = await fit(renamed, { target: 'y', workers: 0, seed: 3, delimiter: ';' });
    expect(odd.posterior.columns).toEqual(['x1;usd', 'x2|eur']);
    expect(odd.posterior.rows).toBe(1000);
    expect(odd.posterior.elbo).toBeCloseTo(plain.posterior.elbo, 6);
  }, 120_000);
});

describe('predict', () => {
  let posterior: Posterior;
  let dir: string;
  beforeAll(async () => {
    dir = tempDir();
    ({ posterior } = await fit(forum, { target: 'y', workers: 0, outDir: path.join(dir, 'fit') }));
  }, 120_000);

  it('refuses an edited posterior as `clusterwise predict` does: a DataError naming it', async () => {
    const edited = { ...posterior, family: 'poisson' } as Posterior;
    await expect(predict(edited, [{ x1: 1, x2: 1 }])).rejects.toThrowError(DataError);
    await expect(predict(edited, [{ x1: 1, x2: 1 }])).rejects.toThrowError(/posterior: invalid posterior: family "poisson" but the state was fitted as "gaussian"/);
    const file = path.join(dir, 'edited.json');
    writeFileSync(file, JSON.stringify({ ...posterior, columns: ['x2', 'x1'] }));
    await expect(predict(file, [{ x1: 1, x2: 1 }])).rejects.toThrowError(`${file}: invalid posterior: target or columns differ`);
    writeFileSync(file, '{"format":');
    await expect(predict(file, [{ x1: 1, x2: 1 }])).rejects.toThrowError(`${file}: not valid JSON`);
    await expect(predict(path.join(dir, 'nope.json'), [{ x1: 1, x2: 1 }])).rejects.toThrowError(`${path.join(dir, 'nope.json')}: file not found`);
  });

  it('gives the log density and, with cluster, p(z | x, y) clusters where the target is there, as `clusterwise predict` does', async () => {
    const file = path.join(dir, 'fit', 'posterior.json');
    const cli = (flags: string[]) => {
      const r = runCli(['predict', file, 'examples/forum.csv', '--workers', '0', ...flags]);
      expect(r.code).toBe(0);
      const [header, ...lines] = r.stdout.trim().split('\n');
      const at = (name: string) => header.split(',').indexOf(name);
      return lines.map((line) => line.split(',')).map((cells) => ({ cluster: Number(cells[at('cluster')]), logDensity: Number(cells[at('log_density')]) }));
    };
    const plain = cli([]);
    const given = cli(['--cluster']);
    for (const data of ['examples/forum.csv', forum]) {
      const scored = await predict(file, data);
      expect(scored.logDensity).toHaveLength(1000);
      scored.logDensity!.forEach((l, i) => expect(Math.abs(l - plain[i].logDensity)).toBeLessThan(1e-6 * (1 + Math.abs(l))));
      expect(Array.from((await predict(file, data, { cluster: true })).cluster)).toEqual(given.map((r) => r.cluster));
    }
    // A missing or unreadable target leaves the row scored, without a density; no target column, no densities.
    const partial = await predict(file, [{ x1: 1, x2: 1, y: 3 }, { x1: 1, x2: 1, y: 'abc' }, { x1: 1, x2: 1 }]);
    expect(partial.rows).toBe(3);
    expect(Array.from(partial.logDensity!, Number.isNaN)).toEqual([false, true, true]);
    expect((await predict(file, [{ x1: 1, x2: 1 }])).logDensity).toBeUndefined();
  }, 60_000);

  it('names a folder given as the data to score', async () => {
    await expect(predict(posterior, dir)).rejects.toThrowError(`${dir}: is a folder, not a CSV file`);
  });

  it('takes the posterior back from JSON, and counts a value beyond ±1e150 as skipped, not scored', async () => {
    const scored = await predict(JSON.parse(JSON.stringify(posterior)) as Posterior, [{ x1: 1, x2: 1 }, { x1: 1e200, x2: 1 }, { x1: 1, x2: -1e160 }, { x1: -1, x2: -1 }]);
    expect(scored.rows).toBe(2);
    expect(scored.skipped).toBe(2);
    expect(Array.from(scored.cluster).map((c) => c >= 0)).toEqual([true, false, false, true]);
    expect(Number.isNaN(scored.prediction[1]) && Number.isNaN(scored.prediction[2])).toBe(true);
  });
});
