/** `clusterwise predict`: score new rows with a fitted posterior; every input record comes out again. */
import { createWriteStream, type Stats } from 'node:fs';
import { readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { DataError, fileNotFound } from '../lib/data/errors.js';
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
  const run = (out: Writable) =>
    predictStream({
      posterior: { text, file: posteriorPath },
      csv: csvPath,
      out,
      workers: options.workers,
      backend: options.backend,
      interval: options.interval,
      cluster: options.cluster,
    });
  if (!options.out) return run(process.stdout);
  const target = options.out;
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new DataError('--out is a folder; name a file', { file: target });
  if (existing?.isFile()) await refuseInputAsOutput(target, existing, [csvPath, posteriorPath]);
  // A file is written beside the target and renamed over it at the end, so a run that fails leaves
  // an existing --out as it was; a device or a pipe (/dev/stdout, a FIFO) is written to directly.
  const direct = existing !== undefined && !existing.isFile();
  const partial = direct ? target : path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.partial`);
  const out = createWriteStream(partial);
  // An output that cannot be opened or written (no such folder, a directory, a full disk) fails the
  // run with its reason, naming --out, instead of an unhandled 'error' event.
  const failed = new Promise<never>((_, reject) =>
    out.once('error', (error: NodeJS.ErrnoException) => reject(new DataError(`cannot write the predictions: ${error.code ?? error.message}`, { file: target }, { cause: error }))),
  );
  failed.catch(() => {});
  try {
    const result = await Promise.race([run(out), failed]);
    out.end();
    await Promise.race([finished(out), failed]);
    if (!direct) await rename(partial, target);
    return result;
  } catch (error) {
    out.destroy();
    if (!direct) await unlink(partial).catch(() => {});
    throw error;
  }
}

/** --out naming the CSV being scored (or the posterior), an existing file, would overwrite what is being read. */
async function refuseInputAsOutput(out: string, target: Stats, inputs: string[]): Promise<void> {
  for (const input of inputs) {
    const source = await stat(input).catch(() => undefined);
    if (source && source.dev === target.dev && source.ino === target.ino)
      throw new DataError(`--out is the input ${input}; predict writes every input record again with its predictions, so name another file`, { file: out });
  }
}
