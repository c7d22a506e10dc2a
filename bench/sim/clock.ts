/**
 * A virtual clock for discrete-event simulation of real async code.
 *
 * The simulated ports and Lambda functions await `clock.sleep(seconds)` instead of doing I/O; the
 * clock resolves sleeps in time order, and between two wake-ups lets every runnable continuation
 * run (a macrotask turn drains the microtasks). The roles' code is the real code: it simply finds
 * that each request to S3 or SQS takes the modelled time.
 *
 * CPU time is charged the same way: a simulated invocation runs inside `invocation.run(...)`, work
 * it does adds to its `cpu` debt (modelled seconds), and its next port call (or its end) first
 * sleeps that debt. One invocation's CPU is therefore serialized with its own I/O and overlaps
 * other invocations', as on separate Lambda instances.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

interface Timer {
  at: number;
  seq: number;
  wake: () => void;
}

export class VirtualClock {
  /** Simulated seconds since the start. */
  now = 0;
  private timers: Timer[] = [];
  private seq = 0;

  sleep(seconds: number): Promise<void> {
    return new Promise((wake) => this.push({ at: this.now + Math.max(0, seconds), seq: this.seq++, wake }));
  }

  /** Run until `done()` holds; throws when nothing is scheduled and `done()` still fails (a deadlock). */
  async run(done: () => boolean): Promise<void> {
    for (;;) {
      // Let every continuation that is runnable now run (several turns: some hop through macrotasks).
      for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
      if (done()) return;
      const next = this.pop();
      if (!next) throw new Error(`simulation stalled at t = ${this.now.toFixed(3)} s: nothing scheduled`);
      this.now = next.at;
      next.wake();
    }
  }

  // A binary heap ordered by (at, seq): equal times wake in scheduling order, so runs repeat exactly.
  private push(t: Timer) {
    const h = this.timers;
    h.push(t);
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  private pop(): Timer | undefined {
    const h = this.timers;
    if (!h.length) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l], h[m])) m = l;
        if (r < h.length && before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

const before = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq);

/** The simulated invocation a continuation belongs to: its function, and its CPU debt. */
export interface Invocation {
  fn: string;
  /** Modelled CPU seconds not yet slept. */
  cpu: number;
  /** Modelled CPU seconds charged to it so far, by kind (the simulator's timeline). */
  charged?: Record<string, number>;
}

export const invocation = new AsyncLocalStorage<Invocation>();

/** Modelled CPU seconds charged so far, by function and kind (what the simulator reports). */
export const cpuCharged = new Map<string, number>();

/** Add modelled CPU seconds of `kind` to the current invocation (ignored outside one, e.g. the planner's setup). */
export function chargeCpu(seconds: number, kind: string): void {
  const current = invocation.getStore();
  if (!current) return;
  current.cpu += seconds;
  if (current.charged) current.charged[kind] = (current.charged[kind] ?? 0) + seconds;
  const key = `${current.fn} ${kind}`;
  cpuCharged.set(key, (cpuCharged.get(key) ?? 0) + seconds);
}

/** Sleep the current invocation's CPU debt. */
export async function payCpu(clock: VirtualClock): Promise<void> {
  const current = invocation.getStore();
  if (!current || current.cpu <= 0) return;
  const debt = current.cpu;
  current.cpu = 0;
  await clock.sleep(debt);
}
