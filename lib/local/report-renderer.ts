/**
 * report.html rendered in a thread of its own (lib/local/report-thread.ts) that warms vega up as
 * soon as it starts. Rendering a report costs about 1.5 s of CPU when vega is cold, a third of
 * that when warm; started before planning, the thread does the cold part on the core planning
 * leaves idle, and the render at the end of the fit is the warm one.
 */
import type { Worker } from 'node:worker_threads';
import path from 'node:path';
import type { ReportRenderer } from '../pipeline/run.js';
import { spawnModuleWorker } from './threads.js';

export interface ToReportThread {
  args: Parameters<ReportRenderer>;
}
export type FromReportThread = { html: string } | { error: string };

export interface ThreadReportRenderer {
  render: ReportRenderer;
  stop(): Promise<void>;
}

export function startReportThread(): ThreadReportRenderer {
  const here = new URL(import.meta.url);
  let failure: Error | undefined;
  const thread: Promise<Worker> = spawnModuleWorker(new URL(`./report-thread${path.extname(here.pathname)}`, here), undefined).then((worker) => {
    worker.on('error', (error) => (failure = error));
    worker.unref();
    return worker;
  });
  // A render is asked for once, at the end: one reply awaited at a time.
  const render: ReportRenderer = async (...args) => {
    const worker = await thread;
    if (failure) throw failure;
    return new Promise<string>((resolve, reject) => {
      const onExit = (code: number) => reject(failure ?? new Error(`report.html: the report thread exited (code ${code})`));
      worker.once('exit', onExit);
      worker.once('message', (reply: FromReportThread) => {
        worker.off('exit', onExit);
        if ('html' in reply) resolve(reply.html);
        else reject(new Error(`report.html: ${reply.error}`));
      });
      worker.postMessage({ args } satisfies ToReportThread);
    });
  };
  return {
    render,
    async stop() {
      await (await thread).terminate();
    },
  };
}
