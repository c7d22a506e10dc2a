/**
 * The local runner's helper thread (lib/local/report-thread.ts): it renders report.html, and it
 * parses shards ahead. vega takes about 0.3 s of CPU to load; started before planning, the thread
 * loads it on the core planning leaves idle, so the render at the end of the fit does not. When the
 * fit has no worker threads (small data, lib/local/threads.ts), it also reads and parses the shards
 * while the main thread initializes, so the first sweep finds them parsed (WorkerCache.prefetch).
 */
import type { Worker } from 'node:worker_threads';
import path from 'node:path';
import type { ParsedRows } from '../data/csv.js';
import type { ReportRenderer, ShardPlan } from '../pipeline/run.js';
import { spawnModuleWorker } from './threads.js';

export interface HelperInit {
  /** The root of the folder store the data files are read from (the runner's dataStore). */
  dataRoot: string;
}
export type ToReportThread =
  | { type: 'load' }
  | { type: 'parse'; id: number; planned: ShardPlan; index: number }
  | { type: 'render'; args: Parameters<ReportRenderer> };
export type FromReportThread =
  | { type: 'render'; html: string }
  | { type: 'render'; error: string }
  | { type: 'parse'; id: number; parsed: ParsedRows }
  | { type: 'parse'; id: number; error: string };

export interface ThreadReportRenderer {
  /** Load vega now, after what was asked before (else the render does it). */
  load(): void;
  render: ReportRenderer;
  /** Shard `index` of a planned run, read and parsed in the thread. */
  parse(planned: ShardPlan, index: number): Promise<ParsedRows>;
  stop(): Promise<void>;
}

export function startReportThread(init: HelperInit): ThreadReportRenderer {
  const here = new URL(import.meta.url);
  let failure: Error | undefined;
  // Replies by kind: one render at a time (it is asked for once, at the end), parses by id.
  let rendering: { resolve(html: string): void; reject(error: Error): void } | undefined;
  const parsing = new Map<number, { resolve(rows: ParsedRows): void; reject(error: Error): void }>();
  let nextId = 0;
  const fail = (error: Error) => {
    failure ??= error;
    rendering?.reject(failure);
    rendering = undefined;
    for (const p of parsing.values()) p.reject(failure);
    parsing.clear();
  };
  const thread: Promise<Worker> = spawnModuleWorker(new URL(`./report-thread${path.extname(here.pathname)}`, here), init).then((worker) => {
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`report.html: the report thread exited (code ${code})`)));
    worker.on('message', (reply: FromReportThread) => {
      if (reply.type === 'render') {
        const waiting = rendering;
        rendering = undefined;
        if ('html' in reply) waiting?.resolve(reply.html);
        else waiting?.reject(new Error(`report.html: ${reply.error}`));
      } else {
        const waiting = parsing.get(reply.id);
        parsing.delete(reply.id);
        if ('parsed' in reply) waiting?.resolve(reply.parsed);
        else waiting?.reject(new Error(reply.error));
      }
      if (!rendering && parsing.size === 0) worker.unref();
    });
    // The thread keeps the process alive only while a reply is awaited.
    worker.unref();
    return worker;
  });
  let started: Worker | undefined;
  void thread.then((worker) => (started = worker), () => {});
  // Posted at once when the thread exists: the caller may be about to compute synchronously for a
  // while (planning's initialization), and an await here would hold the message back until then.
  const ask = async (message: ToReportThread) => {
    const worker = started ?? (await thread);
    if (failure) throw failure;
    if (message.type !== 'load') worker.ref(); // a reply is awaited
    worker.postMessage(message);
  };
  return {
    load: () => void ask({ type: 'load' }).catch(() => {}),
    render: (...args) =>
      new Promise<string>((resolve, reject) => {
        rendering = { resolve, reject };
        ask({ type: 'render', args }).catch(reject);
      }),
    parse: (planned, index) =>
      new Promise<ParsedRows>((resolve, reject) => {
        const id = nextId++;
        parsing.set(id, { resolve, reject });
        ask({ type: 'parse', id, planned, index }).catch(reject);
      }),
    async stop() {
      const worker = await thread;
      worker.removeAllListeners('exit');
      // A timer holds the process until the thread has stopped: a thread that was unreferenced does
      // not (Node 20: a fit whose planning failed while the thread worked ended with exit code 13,
      // its error never reported, though the thread stopped within 20 ms).
      const hold = setInterval(() => {}, 60_000);
      try {
        await worker.terminate();
      } finally {
        clearInterval(hold);
      }
    },
  };
}
