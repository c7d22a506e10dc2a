/**
 * Progress of a fit, phase by phase: reading the sample, initialization, SVI epochs, batch sweeps
 * (k of the most, with the ELBO's relative change against the tolerance), with the elapsed time
 * and an estimate of the current pass's remaining time. On a terminal one line is redrawn (and
 * each finished planning phase kept); otherwise (logs, CI, pipes) each phase's last figure is
 * printed once: the sample, the initialization, every SVI epoch's last estimate, every sweep.
 *
 * Lines are written synchronously from the callbacks: planning blocks the event loop, so a
 * timer-driven bar would stay blank through it.
 */
import type { Schedule } from '../lib/config.js';
import type { PlanPhase, Progress } from '../lib/pipeline/run.js';

export interface ProgressPrinter {
  phase(p: PlanPhase): void;
  update(p: Progress): void;
  stop(): void;
}

export function seconds(ms: number): string {
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(a);

export function progressPrinter(stream: NodeJS.WriteStream, schedule: Pick<Schedule, 'tolerance' | 'maxSweeps'>, now: () => number = Date.now): ProgressPrinter {
  const started = now();
  const sweeps = new Map<number, number>(); // sweep number → its ELBO
  let pass = { key: '', started: started };
  let pendingSvi: string | null = null; // plain mode: the latest SVI line, printed when its epoch ends
  let lastElboFrom: string | null = null;
  let drawn = false;

  const elapsed = () => `${seconds(now() - started)} elapsed`;
  /** Remaining time of the current pass from its shard rate. */
  const eta = (p: Progress) => {
    const key = `${p.phase}/${p.round}`;
    if (key !== pass.key) pass = { key, started: now() };
    if (p.shardsDone === 0 || p.shardsDone >= p.shards) return '';
    const perShard = (now() - pass.started) / p.shardsDone;
    return `, ETA ${p.phase === 'batch' ? 'this sweep ' : ''}${seconds(perShard * (p.shards - p.shardsDone))}`;
  };
  const sweepFigure = (n: number) => {
    const elbo = sweeps.get(n)!;
    const previous = sweeps.get(n - 1);
    const change = previous === undefined ? '' : `, change ${relative(elbo, previous).toExponential(1)} (tolerance ${schedule.tolerance})`;
    return `sweep ${n} of ${schedule.maxSweeps}: ELBO ${elbo.toFixed(2)}${change}`;
  };
  const planLine = (p: PlanPhase) =>
    p.phase === 'sample'
      ? p.done === 0
        ? `reading the sample (up to ${p.total} rows)`
        : `read the sample: ${p.done} rows`
      : (p.done < p.total ? `initializing on the sample: restart ${p.done + 1} of ${p.total}` : `initialized: best of ${p.total} restarts`) +
        (p.selection
          ? ` (covariate selection, fit ${p.selection.fit}: ${p.selection.columns} of ${p.selection.candidates} clustering columns relevant)`
          : '');
  const runLine = (p: Progress) => {
    const counts = `${p.shardsDone}/${p.shards} shards, ${p.rows} rows, ${p.skipped} skipped`;
    if (p.phase === 'svi') return `SVI epoch ${p.round + 1}/${p.rounds}: ${counts}, ELBO ${p.elbo === null ? '–' : `${p.elbo.toFixed(2)} (estimate)`}`;
    if (p.phase === 'batch') {
      const last = Math.max(0, ...sweeps.keys());
      return `sweep ${p.round + 1} of ${schedule.maxSweeps}: ${counts}${last ? `; ${sweepFigure(last)}` : ''}`;
    }
    return `${p.phase}: ${counts}`;
  };

  if (stream.isTTY) {
    const draw = (text: string, keep = false) => {
      const width = Math.max(20, (stream.columns ?? 100) - 1);
      stream.write(`\r${text.length > width ? `${text.slice(0, width - 1)}…` : text}\x1b[K${keep ? '\n' : ''}`);
      drawn = !keep;
    };
    return {
      phase(p) {
        draw(`${planLine(p)} | ${elapsed()}`, p.done > 0 && p.done >= p.total);
      },
      update(p) {
        if (p.elboFrom?.startsWith('sweep ') && p.elbo !== null) sweeps.set(Number(p.elboFrom.slice(6)), p.elbo);
        draw(`${runLine(p)} | ${elapsed()}${eta(p)}`);
      },
      stop() {
        if (drawn) stream.write('\r\x1b[K');
        drawn = false;
      },
    };
  }
  const print = (text: string) => stream.write(`${text} | ${elapsed()}\n`);
  return {
    phase(p) {
      if (p.done > 0 && p.done >= p.total) print(planLine(p)); // the phase's last figure only
    },
    update(p) {
      if (p.elboFrom === null || p.elboFrom === lastElboFrom || p.elbo === null) return;
      lastElboFrom = p.elboFrom;
      if (p.elboFrom.startsWith('SVI')) {
        // Several estimates per epoch: keep the latest, print it when the epoch is over.
        const epoch = p.elboFrom.split(' (')[0];
        if (pendingSvi && !pendingSvi.startsWith(epoch)) print(pendingSvi);
        pendingSvi = `${epoch}: ELBO ${p.elbo.toFixed(2)} (estimate), ${p.rows} rows, ${p.skipped} skipped`;
        return;
      }
      if (pendingSvi) print(pendingSvi);
      pendingSvi = null;
      const n = Number(p.elboFrom.slice(6));
      sweeps.set(n, p.elbo);
      print(`${sweepFigure(n)}, ${p.rows} rows, ${p.skipped} skipped`);
    },
    stop() {
      if (pendingSvi) print(pendingSvi);
      pendingSvi = null;
    },
  };
}
