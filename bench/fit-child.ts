/**
 * One local fit in a process of its own, for the benchmark: prints wall seconds, peak RSS (the
 * process's maxRSS covers its worker threads) and what the fit found, as one JSON line.
 */
import { parseConfig } from '../lib/config.js';
import { fitLocal } from '../lib/local/runner.js';

const [file, out] = process.argv.slice(2);
const started = performance.now();
const result = await fitLocal({ files: [file], config: parseConfig({ target: 'y' }), outDir: out });
const seconds = (performance.now() - started) / 1000;
const p = result.posterior as typeof result.posterior & { trace: { phase: string }[] };
console.log(
  JSON.stringify({
    seconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    kernel: result.kernel,
    rows: p.rows,
    clusters: p.components.length,
    converged: p.converged,
    sweeps: p.trace.filter((t) => t.phase === 'batch').length,
    sviSteps: p.trace.filter((t) => t.phase === 'svi').length,
  }),
);
