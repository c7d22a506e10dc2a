/**
 * One `predict` in a process of its own, for the benchmark: streams the CSV through the posterior
 * into an output file and prints wall seconds, peak RSS (maxRSS covers the worker threads) and the
 * rows scored, as one JSON line.
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { predictFile } from '../lib/local/predict-file.js';

const [posterior, csv, out] = process.argv.slice(2);
const started = performance.now();
const stream = createWriteStream(out);
const result = await predictFile({ posterior: { text: await readFile(posterior, 'utf8'), file: posterior }, csv, out: stream });
stream.end();
await finished(stream);
console.log(
  JSON.stringify({
    seconds: (performance.now() - started) / 1000,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    rows: result.rows,
    threads: result.threads,
  }),
);
