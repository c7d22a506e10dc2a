/**
 * What a Lambda container's cold start costs in this repository's code, measured on this machine:
 * the roles' bundles are built as `cdk synth` builds them (infra/constructs/role-function.ts
 * BUNDLING, esbuild), and each is loaded in fresh Node processes, with and without
 * `--enable-source-maps` (the `sourceMaps` prop), as Lambda's runtime loads a handler; then the
 * wasm kernel is loaded in fresh processes as a container's first task loads it
 * (functions/runtime.ts containerKernel). Medians of `REPEATS` processes.
 *
 * Not measurable here: the platform's part of a cold start before the runtime starts (placing the
 * execution environment and fetching the code), and Lambda's own CPU. bench/sim/params.ts
 * (lambda.coldStart, lambda.kernelLoad) takes these figures, divided by `cpuSpeed`, plus an
 * assumed platform share; docs/deploy.md §6 says so.
 *
 * Run with `npm run build && node dist/bench/cold-start.js` (also part of `npm run bench`); the
 * kernel is loaded from dist/.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { BUNDLING } from '../infra/constructs/role-function.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
const REPEATS = 5;
const ROLES = ['planner', 'worker', 'aggregator'] as const;

/** What the handlers read from the environment at load (functions/runtime.ts); the values are never used. */
const HANDLER_ENV = {
  BUCKET_NAME: 'bench',
  TASKS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/000000000000/tasks',
  UPDATES_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/000000000000/updates',
  AWS_REGION: 'us-east-1',
};

export interface ColdStartBench {
  /** Per role: ms from the process's start to the load, and the load, without and with source maps. */
  roles: Record<(typeof ROLES)[number], { startMs: number; loadMs: number; loadWithSourceMapsMs: number; bundleBytes: number }>;
  /** ms to load the wasm kernel in a fresh process (after importing its module). */
  kernelMs: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Runs `script` (an ES module's text) in a fresh Node process and returns what it printed, parsed. */
function inFreshProcess<T>(script: string, args: string[] = []): T {
  const out = execFileSync(process.execPath, [...args, '--no-warnings', '--input-type=module', '-e', script], {
    cwd: root, // the bundles' external @aws-sdk/* resolve from this repository's node_modules
    env: { ...process.env, ...HANDLER_ENV },
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

export async function benchColdStart(): Promise<ColdStartBench> {
  // Inside the repository, so that the external AWS SDK resolves from its node_modules as on Lambda
  // from the runtime's (an ES module resolves packages from its own location).
  const cache = path.join(root, 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const out = mkdtempSync(path.join(cache, 'clusterwise-cold-start-'));
  try {
    const roles = {} as ColdStartBench['roles'];
    for (const role of ROLES) {
      const file = path.join(out, role, 'index.mjs');
      await build({
        entryPoints: [path.join(root, 'functions', `${role}.ts`)],
        outfile: file,
        bundle: true,
        platform: 'node',
        format: BUNDLING.format,
        mainFields: [...BUNDLING.mainFields],
        banner: { js: BUNDLING.banner },
        define: BUNDLING.define,
        minify: BUNDLING.minify,
        target: BUNDLING.target,
        external: [...BUNDLING.externalModules],
        sourcemap: true,
        logLevel: 'error',
      });
      const load = `const start = performance.now(); await import(${JSON.stringify(pathToFileURL(file).href)}); console.log(JSON.stringify({ start, load: performance.now() - start }));`;
      const plain = Array.from({ length: REPEATS }, () => inFreshProcess<{ start: number; load: number }>(load));
      const mapped = Array.from({ length: REPEATS }, () => inFreshProcess<{ start: number; load: number }>(load, ['--enable-source-maps']));
      roles[role] = {
        startMs: median(plain.map((r) => r.start)),
        loadMs: median(plain.map((r) => r.load)),
        loadWithSourceMapsMs: median(mapped.map((r) => r.load)),
        bundleBytes: statSync(file).size,
      };
    }
    const backend = pathToFileURL(path.join(root, 'dist', 'lib', 'kernel', 'backend.js')).href;
    const kernel = `const { loadKernel } = await import(${JSON.stringify(backend)}); const start = performance.now(); await loadKernel('wasm'); console.log(JSON.stringify(performance.now() - start));`;
    const kernelMs = median(Array.from({ length: REPEATS }, () => inFreshProcess<number>(kernel)));
    return { roles, kernelMs };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

export function printColdStart(r: ColdStartBench): void {
  for (const [role, m] of Object.entries(r.roles)) {
    console.log(
      `   ${role.padEnd(10)} bundle ${(m.bundleBytes / 1e6).toFixed(2)} MB: process start ${m.startMs.toFixed(0)} ms, load ${m.loadMs.toFixed(0)} ms (with --enable-source-maps ${m.loadWithSourceMapsMs.toFixed(0)} ms)`,
    );
  }
  console.log(`   wasm kernel loaded in ${r.kernelMs.toFixed(0)} ms`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(`Cold start of the Lambda roles' code (Node ${process.version}; median of ${REPEATS} fresh processes)`);
  printColdStart(await benchColdStart());
}
