/** Progress of a fit: a bar on a terminal (cli-progress), plain lines otherwise (logs, CI, pipes). */
import cliProgress from 'cli-progress';
import type { Progress } from '../lib/pipeline/run.js';

export interface ProgressPrinter {
  update(p: Progress): void;
  stop(): void;
}

const label = (p: Progress) => (p.phase === 'svi' ? `SVI epoch ${p.round + 1}/${p.rounds}` : p.phase === 'batch' ? `sweep ${p.round + 1}` : p.phase);
const elbo = (p: Progress) => (p.elbo === null ? '–' : `${p.elbo.toFixed(2)} (${p.elboFrom})`);

export function progressPrinter(stream: NodeJS.WriteStream): ProgressPrinter {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: '{phase} [{bar}] {value}/{total} shards | ELBO {elbo} | {rows} rows, {skipped} skipped', stream, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const payload = { phase: label(p).padEnd(14), elbo: elbo(p), rows: p.rows, skipped: p.skipped };
        if (!started) bar.start(p.shards, p.shardsDone, payload);
        else bar.update(p.shardsDone, payload);
        started = true;
      },
      stop: () => started && (bar.stop(), (started = false)),
    };
  }
  // Plain lines: one per batch sweep, and one per SVI epoch (its last estimate).
  let last: string | null = null;
  return {
    update(p) {
      if (p.elboFrom === null || p.elboFrom === last) return;
      if (p.elboFrom.startsWith('SVI') && p.phase === 'svi' && last?.startsWith(p.elboFrom.split(' (')[0])) return;
      last = p.elboFrom;
      stream.write(`${p.elboFrom}: ELBO ${p.elbo!.toFixed(2)}, ${p.rows} rows, ${p.skipped} skipped\n`);
    },
    stop() {},
  };
}
