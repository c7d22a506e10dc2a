/**
 * `npm run bench`: measures and prints (no thresholds; targets are discussed in the closing notes):
 *  1. rows/s of the local step, reference vs TensorFlow.js kernels (D=10, P=11, T=20, 20k rows);
 *  2. CSV parse MB/s;
 *  3. end-to-end `fit` of a generated 1M-row, 10-covariate, 8-cluster CSV: wall seconds, peak RSS;
 *  4. `predict` with that fit's posterior over the 1M-row CSV (also with `--interval 0.9`) and a
 *     generated 5M-row one: wall and CPU seconds, peak RSS (it streams, so the peak should not grow
 *     with the rows). The files hold the target, so log_density is written too. Target (issue 7):
 *     1M rows in at most 2 s wall on the 2-core machine, 5M rows under 300 MB.
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { largeRows } from '../examples/generate.js';
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
