/**
 * The local runner's helper thread (lib/local/report-renderer.ts). It does what it is asked, one
 * thing at a time: parse shards ahead, load vega (while the main thread plans and a core is idle),
 * and render the report off the main thread. vega is loaded when first asked for, so parsing ahead
 * is not held up by it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FolderObjectStore } from '../pipeline/folder-store.js';
import { parseAhead } from '../pipeline/worker.js';
import type { FromReportThread, HelperInit, ToReportThread } from './report-renderer.js';

const init = workerData as HelperInit;
const port = parentPort!;
const post = (m: FromReportThread) => port.postMessage(m);
const describe = (error: unknown) => (error instanceof Error ? (error.stack ?? error.message) : String(error));
const dataStore = new FolderObjectStore(init.dataRoot, { durable: false, etags: 'stat' });
let report: Promise<typeof import('../model/report.js')> | undefined;
const loadReport = () => (report ??= import('../model/report.js'));

async function handle(m: ToReportThread): Promise<void> {
  if (m.type === 'load') {
    await loadReport();
  } else if (m.type === 'parse') {
    try {
      post({ type: 'parse', id: m.id, parsed: await parseAhead({ store: dataStore, dataStore }, m.planned, m.index) });
    } catch (error) {
      post({ type: 'parse', id: m.id, error: describe(error) });
    }
  } else {
    try {
      post({ type: 'render', html: (await loadReport()).renderReport(...m.args) });
    } catch (error) {
      post({ type: 'render', error: describe(error) });
    }
  }
}

// In order, one at a time: a parse that awaits its file must not let vega's loading start meanwhile.
let queue = Promise.resolve();
port.on('message', (m: ToReportThread) => {
  queue = queue.then(() => handle(m));
});
