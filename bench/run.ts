/**
 * `npm run bench`: measures and prints (no thresholds; targets are discussed in the closing notes):
 *  1. rows/s of the local step, reference vs TensorFlow.js kernels (D=10, P=11, T=20, 20k rows);
 *  2. CSV parse MB/s;
 *  3. end-to-end `fit` of a generated 1M-row, 10-covariate, 8-cluster CSV: wall seconds, peak RSS;
 *  4. `predict` with that fit's posterior over the 1M-row CSV (also with `--interval 0.9`) and a
 *     generated 5M-row one: wall and CPU seconds, peak RSS (it streams, so the peak should not grow
 *     with the rows). The files hold the target, so log_density is written too. Target (issue 7):
 *     1M rows in at most 2 s wall on the 2-core machine, 5M rows under 300 MB;
 *  5. the whole CLI (`clusterwise fit`, a process of its own: start-up, sample, initialization,
 *     sweeps, report) on a generated 100k-row, 10-covariate, 8-cluster CSV, against scikit-learn's
 *     BayesianGaussianMixture (20 components as our truncation, its defaults otherwise; on x, as it
 *     has no regression) on the same file in the same run, when Debian's python3 has sklearn.
 *     Target (issue 8): at most 1.5 s, and at least 10× faster than sklearn;
 *  6. the Lambda roles' cold start as far as it is this repository's code: each role's bundle loaded
 *     in fresh processes, with and without source maps, and the wasm kernel (bench/cold-start.ts).
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { largeRows } from '../examples/generate.js';
import { benchColdStart, printColdStart } from './cold-start.js';
import { benchCsv } from './csv.js';
import { benchKernels } from './kernel.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
const dataDir = path.join(root, 'bench', 'data');

async function generate(file: string, rows: number) {
  mkdirSync(path.dirname(file), { recursive: true });
  const out = createWriteStream(file);
  for (const chunk of largeRows(rows, 10, 8)) if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
}

console.log(`clusterwise benchmark: Node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'})\n`);

console.log('1. Local step, gaussian, covariate model on, D=10, P=11, T=20, batch of 20 000 rows');
for (const k of await benchKernels()) {
  console.log(`   ${k.name.padEnd(12)} ${Math.round(k.rowsPerSecond).toLocaleString('en').padStart(10)} rows/s  ×${k.speedup.toFixed(1)} reference`);
}

const csv = await benchCsv();
console.log(`\n2. CSV parse (11 numeric columns, all converted): ${csv.mbPerSecond.toFixed(1)} MB/s over ${csv.rows.toLocaleString('en')} rows`);

const file = path.join(dataDir, 'large-1m.csv');
if (!existsSync(file)) {
  const t = performance.now();
  await generate(file, 1_000_000);
  console.log(`\n   (generated ${file}: ${(statSync(file).size / 1e6).toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s)`);
}
const child = spawnSync(process.execPath, [path.join(here, `fit-child${path.extname(fileURLToPath(import.meta.url))}`), file, path.join(dataDir, 'out')], {
  encoding: 'utf8',
  maxBuffer: 1 << 24,
});
if (child.status !== 0) {
  console.error(child.stderr);
  process.exit(1);
}
const fit = JSON.parse(child.stdout.trim().split('\n').pop()!);
console.log(
  `\n3. fit of a 1M-row, 10-covariate, 8-cluster CSV (${(statSync(file).size / 1e6).toFixed(0)} MB), default settings, ${fit.kernel}:` +
    `\n   ${fit.seconds.toFixed(1)} s wall, peak RSS ${Math.round(fit.peakRssMiB)} MiB; ${fit.clusters} clusters, ` +
    `${fit.sviSteps} SVI steps + ${fit.sweeps} batch sweeps, converged: ${fit.converged}, rows: ${fit.rows}`,
);

// 4. predict, streamed, in a process of its own (its peak RSS is its own).
const predictRun = (csvFile: string, interval?: string) => {
  const run = spawnSync(
    process.execPath,
    [
      path.join(here, `predict-child${path.extname(fileURLToPath(import.meta.url))}`),
      path.join(dataDir, 'out', 'posterior.json'),
      csvFile,
      path.join(dataDir, 'out', 'scored.csv'),
      ...(interval === undefined ? [] : [interval]),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  if (run.status !== 0) {
    console.error(run.stderr);
    process.exit(1);
  }
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as {
    seconds: number;
    cpuSeconds: number;
    peakRssMiB: number;
    rows: number;
    threads: number;
    logDensityPerRow: number | null;
  };
};
const file5m = path.join(dataDir, 'large-5m.csv');
if (!existsSync(file5m)) {
  const t = performance.now();
  await generate(file5m, 5_000_000);
  console.log(`\n   (generated ${file5m}: ${(statSync(file5m).size / 1e6).toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s)`);
}
console.log('\n4. predict with that posterior (streamed; threads from 16 MiB of data; the files hold y, so log_density too):');
for (const [label, csvFile, interval] of [['1M rows', file, undefined], ['1M rows, --interval 0.9', file, '0.9'], ['5M rows', file5m, undefined]] as const) {
  const p = predictRun(csvFile, interval);
  console.log(
    `   ${label.padEnd(24)} ${p.seconds.toFixed(2)} s wall, ${p.cpuSeconds.toFixed(2)} s CPU, peak RSS ${Math.round(p.peakRssMiB)} MiB, ` +
      `${p.rows.toLocaleString('en')} rows, ${p.threads} threads, mean log_density ${p.logDensityPerRow?.toFixed(4) ?? '-'}`,
  );
}

// 5. The whole CLI at 100k rows against scikit-learn on the same file.
const file100k = path.join(dataDir, 'large-100k.csv');
if (!existsSync(file100k)) await generate(file100k, 100_000);
const cli = path.join(root, 'dist', 'cli', 'main.js');
/** Wall seconds of a command, with user + system CPU seconds when /usr/bin/time is here to count them. */
const timed = (command: string, args: string[]) => {
  const time = existsSync('/usr/bin/time');
  const started = performance.now();
  const run = spawnSync(time ? '/usr/bin/time' : command, time ? ['-f', 'cpu %U %S', command, ...args] : args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = (performance.now() - started) / 1000;
  const cpu = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(run.stderr ?? '');
  return { run, seconds, cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : undefined };
};
console.log('\n5. The whole CLI on a 100k-row, 10-covariate, 8-cluster CSV (issue 8: at most 1.5 s, at least 10× faster than sklearn):');
const ours = [1, 2, 3].map(() => timed(process.execPath, [cli, 'fit', file100k, '--target', 'y', '--out', path.join(dataDir, 'out-100k')]));
for (const o of ours) if (o.run.status !== 0) (console.error(o.run.stderr), process.exit(1));
const best = ours.reduce((a, b) => (b.seconds < a.seconds ? b : a));
console.log(`   clusterwise fit   ${ours.map((o) => o.seconds.toFixed(2)).join(', ')} s wall (best ${best.seconds.toFixed(2)} s, ${best.cpuSeconds?.toFixed(2) ?? '-'} s CPU)`);
const python = '/usr/bin/python3';
if (spawnSync(python, ['-c', 'import sklearn'], { encoding: 'utf8' }).status === 0) {
  const script = [
    'import sys, time',
    'import numpy as np',
    'from sklearn.mixture import BayesianGaussianMixture',
    'd = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)',
    't = time.time()',
    'm = BayesianGaussianMixture(n_components=20, random_state=1).fit(d[:, :-1])',
    'print(time.time() - t, m.converged_, m.n_iter_, int((m.weights_ >= 0.01).sum()))',
  ].join('\n');
  const sk = timed(python, ['-c', script, file100k]);
  if (sk.run.status !== 0) console.log(`   scikit-learn failed: ${sk.run.stderr.slice(0, 300)}`);
  else {
    const [fitSeconds, converged, iterations, clusters] = sk.run.stdout.trim().split(/\s+/);
    console.log(
      `   sklearn BGM       ${sk.seconds.toFixed(2)} s wall (fit ${Number(fitSeconds).toFixed(2)} s, ${iterations} iterations, converged ${converged}, ${clusters} clusters ≥ 1%); ` +
        `clusterwise is ${(sk.seconds / best.seconds).toFixed(1)}× faster`,
    );
  }
} else console.log('   scikit-learn: not installed (apt-get install python3-sklearn)');

console.log(`\n6. Cold start of the Lambda roles' code (issue 6; the simulator's lambda.coldStart and lambda.kernelLoad take these):`);
printColdStart(await benchColdStart());
