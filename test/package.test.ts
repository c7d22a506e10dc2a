/**
 * The package as a user installs it: `npm pack` the built tree, unpack the tarball into a new
 * project's node_modules (its dependencies linked to this checkout's, so no network is needed),
 * type-check a TypeScript file against the shipped declarations, run it: `fit` on rows in memory,
 * `predict` on the result.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const MAIN = `import { fit, predict, type Posterior, type Predictions } from 'clusterwise';

// Two lines through one covariate: y = 2x + 1 and y = 8 − x, alternating rows.
const rows = Array.from({ length: 400 }, (_, i) => {
  const x = (i % 200) / 20;
  return { x, y: i % 2 ? 2 * x + 1 + Math.sin(i) / 10 : 8 - x + Math.cos(i) / 10 };
});
const { posterior, reportHtml } = await fit(rows, { target: 'y', components: 5, workers: 0, backend: 'reference' });
const typed: Posterior = posterior;
const scored: Predictions = await predict(typed, [{ x: 1 }, { x: 'not a number' }]);
// @ts-expect-error: the target is required
void (() => fit(rows, { components: 3 }));
console.log(JSON.stringify({
  format: typed.format,
  clusters: typed.components.length,
  slopes: typed.components.map((c) => c.coefficients[0]).sort((a, b) => a - b),
  report: reportHtml.startsWith('<!doctype html>'),
  scored: scored.rows,
  skipped: scored.skipped,
  cluster: scored.cluster[1],
}));
`;

describe('the packed package', () => {
  let dir: string;
  let files: string[];
  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist/lib/index.d.ts'))) throw new Error('dist/lib/index.d.ts is missing: run `npm run build` first');
    dir = mkdtempSync(join(tmpdir(), 'clusterwise-package-'));
    // --ignore-scripts: the tree is already built (npm test builds first); prepare would rebuild it.
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' }),
    ) as { filename: string; files: { path: string }[] }[];
    files = packed[0].files.map((f) => f.path);
    const installed = join(dir, 'node_modules/clusterwise');
    mkdirSync(installed, { recursive: true });
    execFileSync('tar', ['-xzf', join(dir, packed[0].filename), '-C', installed, '--strip-components=1']);
    symlinkSync(join(ROOT, 'node_modules'), join(installed, 'node_modules'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    writeFileSync(join(dir, 'main.ts'), MAIN);
  }, 120_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships the compiled library with its declarations and the JSON Schemas, not the sources or tests', () => {
    expect(files).toEqual(expect.arrayContaining(['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/cli/main.js', 'schemas/posterior.schema.json', 'schemas/model.schema.json']));
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('dist/test/'))).toEqual([]);
  });

  it('type-checks and runs a TypeScript file that fits rows in memory and predicts', () => {
    execFileSync(
      join(ROOT, 'node_modules/.bin/tsc'),
      ['--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck',
        '--typeRoots', join(ROOT, 'node_modules/@types'), '--types', 'node', '--outDir', 'out', 'main.ts'],
      { cwd: dir, stdio: 'pipe' },
    );
    const output = JSON.parse(execFileSync(process.execPath, ['out/main.js'], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop()!);
    expect(output).toMatchObject({ format: 'clusterwise/posterior@1', clusters: 2, report: true, scored: 1, skipped: 1, cluster: -1 });
    expect(output.slopes[0]).toBeCloseTo(-1, 1);
    expect(output.slopes[1]).toBeCloseTo(2, 1);
  }, 180_000);
});
