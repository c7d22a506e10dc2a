/**
 * One `predict` in a process of its own, for the benchmark: streams the CSV through the posterior
 * into an output file and prints wall seconds, user + system CPU seconds of the whole process
 * (every thread, start-up included: on a shared machine the steadier figure), peak RSS (maxRSS
 * covers the worker threads) and the rows scored, as one JSON line. A fourth argument is passed
 * as `--interval`.
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { predictFile } from '../lib/local/predict-file.js';

const [posterior, csv, out, interval] = process.argv.slice(2);
const started = performance.now();
const stream = createWriteStream(out);
const result = await predictFile({
  posterior: { text: await readFile(posterior, 'utf8'), file: posterior },
  csv,
  out: stream,
  ...(interval === undefined ? {} : { interval: Number(interval) }),
});
stream.end();
await finished(stream);
console.log(
  JSON.stringify({
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (process.resourceUsage().userCPUTime + process.resourceUsage().systemCPUTime) / 1e6,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    rows: result.rows,
    threads: result.threads,
    logDensityPerRow: result.logDensity ? result.logDensity.total / result.logDensity.rows : null,
  }),
);
