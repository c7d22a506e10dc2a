/** `clusterwise predict`: score new rows with a fitted posterior; every input record comes out again. */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { fileNotFound } from '../lib/data/errors.js';
import type { BackendName } from '../lib/kernel/backend.js';
import { predictFile as predictStream, type PredictFileResult } from '../lib/local/predict-file.js';

export async function predictFile(
  posteriorPath: string,
  csvPath: string,
  options: { out?: string; workers?: number; backend?: BackendName | 'auto'; interval?: number; cluster?: boolean } = {},
): Promise<PredictFileResult> {
  const text = await readFile(posteriorPath, 'utf8').catch((e) => {
    throw fileNotFound(posteriorPath, e);
  });
  const out = options.out ? createWriteStream(options.out) : process.stdout;
  const result = await predictStream({
    posterior: { text, file: posteriorPath },
    csv: csvPath,
    out,
    workers: options.workers,
    backend: options.backend,
    interval: options.interval,
    cluster: options.cluster,
  });
  if (options.out) {
    out.end();
    await finished(out);
  }
  return result;
}
