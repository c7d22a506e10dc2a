/**
 * Local input files as the user named them: a folder given where a CSV file belongs is named as
 * such (the folder store sees no object there, which would read "file not found").
 */
import { stat } from 'node:fs/promises';
import { DataError } from '../data/errors.js';

/** Sizes of `files` in bytes (0 for one that cannot be read: planning names it); a folder is a DataError. */
export async function inputSizes(files: readonly string[]): Promise<number[]> {
  return Promise.all(
    files.map(async (file) => {
      const info = await stat(file).catch(() => undefined);
      if (info?.isDirectory()) throw new DataError('is a folder, not a CSV file: name the CSV files in it (for example folder/*.csv)', { file });
      return info?.size ?? 0;
    }),
  );
}
