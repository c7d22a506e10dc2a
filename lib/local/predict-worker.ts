/** A predict worker thread: scores the chunks the main thread sends (lib/local/predict-file.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { scorerFor, type PredictWorkerInit, type ScoreRequest, type ScoreReply } from './predict-file.js';

const init = workerData as PredictWorkerInit;
const port = parentPort!;
let score: Awaited<ReturnType<typeof scorerFor>>;
try {
  score = await scorerFor(init);
} catch (error) {
  // Told to the main thread, which reports it once (a kernel backend that cannot load, say).
  port.postMessage({ failed: error instanceof Error ? error.message : String(error) });
  process.exit(1);
}
port.on('message', (request: ScoreRequest) => {
  let reply: ScoreReply;
  try {
    reply = { id: request.id, ...score(request.bytes) };
  } catch (error) {
    reply = { id: request.id, error: error instanceof Error ? error.message : String(error) };
  }
  port.postMessage(reply, 'out' in reply ? [reply.out.buffer as ArrayBuffer] : []);
});
port.postMessage({ ready: true });
