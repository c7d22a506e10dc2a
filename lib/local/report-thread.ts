/**
 * The local runner's report thread: it loads vega and renders throwaway charts while the main
 * thread plans (a core is idle then), so the report at the end of the fit is rendered warm,
 * off the main thread (lib/local/report-renderer.ts).
 */
import { parentPort } from 'node:worker_threads';
import { renderReport, warmReport } from '../model/report.js';
import type { FromReportThread, ToReportThread } from './report-renderer.js';

const port = parentPort!;
const post = (m: FromReportThread) => port.postMessage(m);
warmReport();
port.on('message', ({ args }: ToReportThread) => {
  try {
    post({ html: renderReport(...args) });
  } catch (error) {
    post({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
});
