/**
 * One `fit` per output folder at a time: OUT/.clusterwise.lock is created exclusively ('wx') with
 * the owner's pid and removed at the end. A lock whose pid is no longer running (a fit that was
 * killed) is taken over.
 */
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ClusterwiseError } from '../errors.js';

/** Another fit writes to the same folder; trying again once it ended may pass. */
export class OutputLockedError extends ClusterwiseError {
  override readonly retryable = true;

  constructor(message: string) {
    super(message);
    this.name = 'OutputLockedError';
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/** The output folder cannot be made: a file is in its place, or the path is empty or not writable. */
export class OutputFolderError extends ClusterwiseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OutputFolderError';
  }
}

/** Creates `dir` (and its parents) for the fit's files, or says in the user's terms why it cannot. */
async function makeOutputFolder(dir: string): Promise<void> {
  if (dir.trim() === '') throw new OutputFolderError('the output folder is an empty path: give --out (outDir) a folder');
  await mkdir(dir, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
    const why =
      error.code === 'EEXIST' || error.code === 'ENOTDIR'
        ? 'not a folder (a file is in its place or in its path); fit writes posterior.json and report.html into a folder'
        : error.code === 'EACCES' || error.code === 'EPERM' || error.code === 'EROFS'
          ? `cannot create the output folder there (${error.code})`
          : `cannot create the output folder (${error.code ?? error.message})`;
    throw new OutputFolderError(`${dir}: ${why}`, { cause: error });
  });
}

/** Takes the lock of `dir` (creating the folder); resolves to its release. */
export async function lockOutput(dir: string): Promise<() => Promise<void>> {
  await makeOutputFolder(dir);
  const file = path.join(dir, '.clusterwise.lock');
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      return () => unlink(file).catch(() => {});
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    // A second loss means another process took the stale lock first.
    if ((Number.isInteger(pid) && pid > 0 && running(pid)) || attempt > 0)
      throw new OutputLockedError(`${dir}: another clusterwise fit (pid ${pid}) is writing there; wait for it to finish or choose another --out`);
    await unlink(file).catch(() => {}); // stale: its fit is gone
  }
}
