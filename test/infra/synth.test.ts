/**
 * The one infra test that bundles for real: `cdk synth` of the app (cdk.json → infra/app.ts) into a
 * temporary directory, with local esbuild bundling. Slow (tens of seconds).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WASM_DIR = join(ROOT, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');
/** Lambda's limit on a zip uploaded directly; from S3 the limit is 250 MB unzipped. */
const ZIP_LIMIT = 50 * 1024 * 1024;
const UNZIPPED_LIMIT = 250 * 1024 * 1024;

type Resource = { Type: string; Properties: Record<string, any>; Metadata?: Record<string, string> };

function directorySize(dir: string): number {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .reduce((sum, entry) => sum + statSync(join(entry.parentPath, entry.name)).size, 0);
}

describe('cdk synth with bundling', () => {
  let out: string;
  let resources: Record<string, Resource>;

  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), 'clusterwise-synth-'));
    execFileSync(join(ROOT, 'node_modules/.bin/cdk'), ['synth', '--quiet', '--output', join(out, 'cdk.out')], {
      cwd: ROOT,
      env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1', CDK_DISABLE_CLI_TELEMETRY: '1' },
      stdio: 'pipe',
    });
    const manifest = JSON.parse(readFileSync(join(out, 'cdk.out/manifest.json'), 'utf8'));
    const templateFile = manifest.artifacts.Clusterwise.properties.templateFile as string;
    resources = JSON.parse(readFileSync(join(out, 'cdk.out', templateFile), 'utf8')).Resources;
  }, 300_000);

  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  /** The bundle directory of a role's function, from the asset metadata CDK writes on it. */
  const assetDir = (role: string): string => {
    const fn = Object.values(resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME === `clusterwise-${role}`,
    );
    expect(fn, `function of ${role}`).toBeDefined();
    return join(out, 'cdk.out', fn!.Metadata!['aws:asset:path']);
  };

  it('bundles each role into one ES module with the require banner, and no source map by default', () => {
    for (const role of ['ingest', 'planner', 'worker', 'aggregator']) {
      const dir = assetDir(role);
      const files = readdirSync(dir);
      expect(files).toContain('index.mjs');
      // Node would parse a shipped map only with --enable-source-maps (the sourceMaps prop), at a cost to every cold start.
      expect(files).not.toContain('index.mjs.map');
      const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
      expect(code.startsWith("import { createRequire as __cwCreateRequire } from 'node:module';")).toBe(true);
      expect(code).toMatch(/const require = __cwCreateRequire\(import\.meta\.url\)/);
      // Every role that runs the kernel (planning a run, or a task) ships the wasm binaries.
      expect(files.some((f) => f.endsWith('.wasm'))).toBe(role !== 'aggregator');
    }
  });

  it('ships the TensorFlow.js wasm binaries next to the worker bundle, and the zip stays under 50 MB', () => {
    const dir = assetDir('worker');
    const wanted = readdirSync(WASM_DIR).filter((f) => f.endsWith('.wasm'));
    expect(wanted.length).toBeGreaterThan(0);
    for (const file of wanted) {
      expect(statSync(join(dir, file)).size, file).toBe(statSync(join(WASM_DIR, file)).size);
    }

    const unzipped = directorySize(dir);
    expect(unzipped).toBeLessThan(UNZIPPED_LIMIT);
    const hasZip = spawnSync('zip', ['-v'], { stdio: 'ignore' }).status === 0;
    if (hasZip) {
      const zipFile = join(out, 'worker.zip');
      execFileSync('zip', ['-q', '-r', '-X', zipFile, '.'], { cwd: dir });
      const zipped = statSync(zipFile).size;
      console.log(`worker bundle: ${unzipped} bytes unzipped, ${zipped} bytes zipped`);
      expect(zipped).toBeLessThan(ZIP_LIMIT);
    } else {
      console.log(`worker bundle: ${unzipped} bytes unzipped (no zip CLI: compared the unzipped size with the 50 MB zip limit)`);
      expect(unzipped).toBeLessThan(ZIP_LIMIT);
    }
  });
});
