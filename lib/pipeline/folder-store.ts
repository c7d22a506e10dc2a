/**
 * ObjectStore over a folder: key `a/b/c.csv` is the file `<root>/a/b/c.csv`.
 *
 * - Writes are atomic: the bytes go to a temporary file in the target's folder (named
 *   `.clusterwise-tmp-*`, never listed), are fsynced (unless `durable: false`), and are renamed
 *   over the target, so a reader sees the old object or the new one, never a torn one.
 * - ETag (default `etags: 'content'`): the quoted MD5 hex of the content, the same value S3 gives
 *   a single-part upload and MemoryObjectStore gives the same bytes. Not mtime+size: two same-size
 *   writes within one file-timestamp tick (a few ms on Linux) would share an ETag, and a
 *   conditional put on a small state file would then let a lost update through. Hashing is paid
 *   once per file version: a put records the hash of what it wrote, and a hash computed on read is
 *   cached against the file's identity (device, inode, size, mtime in ns), so `head`/`list` of a
 *   100 MB CSV reads it once per process. For folders of large input files that never take
 *   conditional puts, `etags: 'stat'` derives the ETag from size, mtime and inode instead and
 *   reads nothing.
 * - Conditional puts are linearizable within one JS thread: puts and deletes of a key are
 *   serialized by a lock shared by every FolderObjectStore of the module instance (worker_threads
 *   each have their own). `ifNoneMatch: '*'` also holds across threads and processes (the file is
 *   put in place with link(2), which fails if the name exists); `ifMatch` does not: another
 *   thread's or process's write between the check and the rename is not detected.
 * - Keys are '/'-separated relative paths; '', '.', '..' segments, a leading or trailing '/',
 *   backslashes and NUL are rejected (PortError), so no key escapes the folder. A key cannot be
 *   both an object and a "folder" of other objects (`a` and `a/b`), which S3 allows.
 * - `getRange` reads only the requested bytes through a file handle.
 * - `list` walks the folder recursively (following symlinks to files, not to folders) and returns
 *   '/'-separated keys in S3 order. `delete` removes folders it leaves empty.
 */
import { createHash, randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, rename, rm, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import {
  NotFoundError,
  PortError,
  PreconditionFailedError,
  type GetResult,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './ports.js';
import { checkRange, compareKeys, contentEtag } from './memory-store.js';

export interface FolderObjectStoreOptions {
  /**
   * fsync each new file before renaming it into place, and its folder after, so that a crash
   * leaves either the old object or the complete new one.
   * @default true
   */
  durable?: boolean;
  /**
   * How ETags are made. 'content': quoted MD5 of the bytes (as S3). 'stat': from size, mtime
   * (ns) and inode, without reading the file; meant for folders of input files that never take
   * conditional puts (a same-size rewrite within one timestamp tick could keep its ETag).
   * @default 'content'
   */
  etags?: 'content' | 'stat';
}

const TEMP_PREFIX = '.clusterwise-tmp-';
const HASH_CHUNK = 1 << 20;

/** Per-file lock chains, shared by all instances so two stores on one folder still serialize. */
const locks = new Map<string, Promise<void>>();

async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const previous = locks.get(file) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = previous.then(() => mine);
  locks.set(file, tail);
  await previous;
  try {
    return await fn();
  } finally {
    release();
    if (locks.get(file) === tail) locks.delete(file);
  }
}

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** Errors that mean "there is no object at this key". */
function isAbsent(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

function identity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}

function statEtag(st: BigIntStats): string {
  return `"${st.size.toString(16)}-${st.mtimeNs.toString(16)}-${st.ino.toString(16)}"`;
}

/** A plain Uint8Array over exactly these bytes (Buffers from a pool are copied). */
function plainBytes(buf: Buffer): Uint8Array {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) {
    return new Uint8Array(buf.buffer, 0, buf.byteLength);
  }
  return Uint8Array.prototype.slice.call(buf);
}

export class FolderObjectStore implements ObjectStore {
  /** Absolute path of the folder. */
  readonly root: string;
  private readonly durable: boolean;
  private readonly statEtags: boolean;
  /** Absolute file path -> ETag of the file version with that identity. */
  private readonly etags = new Map<string, { id: string; etag: string }>();

  constructor(rootDir: string, options: FolderObjectStoreOptions = {}) {
    this.root = resolve(rootDir);
    this.durable = options.durable ?? true;
    this.statEtags = (options.etags ?? 'content') === 'stat';
  }

  async get(key: string): Promise<GetResult> {
    const file = this.pathOf(key);
    const fh = await this.openObject(file, key);
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw new NotFoundError(key);
      const body = plainBytes(await fh.readFile());
      if (this.statEtags) return { body, etag: statEtag(st) };
      const etag = contentEtag(body);
      this.etags.set(file, { id: identity(st), etag });
      return { body, etag };
    } catch (err) {
      throw this.wrap(err, 'get', key);
    } finally {
      await fh.close();
    }
  }

  async getRange(key: string, start: number, end: number, options: { ifMatch?: string } = {}): Promise<Uint8Array> {
    if (checkRange(key, start, end)) return new Uint8Array(0);
    const file = this.pathOf(key);
    if (options.ifMatch !== undefined) {
      // Checked before the read; objects are replaced by rename, so a read sees one version whole.
      const info = await this.infoAt(file, key);
      if (!info) throw new NotFoundError(key);
      if (info.etag !== options.ifMatch) throw new PreconditionFailedError(key);
    }
    const fh = await this.openObject(file, key);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new NotFoundError(key);
      const from = Math.min(start, st.size);
      const length = Math.min(end, st.size) - from;
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await fh.read(out, filled, length - filled, from + filled);
        if (bytesRead === 0) break; // cannot happen with atomic writes; be safe anyway
        filled += bytesRead;
      }
      return filled === length ? out : out.slice(0, filled);
    } catch (err) {
      throw this.wrap(err, 'getRange', key);
    } finally {
      await fh.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    return this.infoAt(this.pathOf(key), key);
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const file = this.pathOf(key);
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    return withLock(file, async () => {
      if (options.ifMatch !== undefined) {
        const current = await this.infoAt(file, key);
        if (current?.etag !== options.ifMatch) throw new PreconditionFailedError(key);
      }
      if (options.ifNoneMatch === '*' && (await this.infoAt(file, key))) {
        throw new PreconditionFailedError(key);
      }
      const dir = dirname(file);
      const { tmp, st } = await this.writeTemp(dir, bytes, key);
      try {
        if (options.ifNoneMatch === '*') await this.linkIntoPlace(tmp, file, key);
        else await rename(tmp, file);
      } catch (err) {
        await rm(tmp, { force: true });
        if (err instanceof PortError) throw err;
        throw new PortError(`put ${key} failed: ${(err as Error).message}`, { cause: err });
      }
      if (this.durable) await syncDir(dir);
      if (this.statEtags) return { etag: statEtag(st) }; // rename and link keep inode, size and mtime
      const etag = contentEtag(bytes);
      this.etags.set(file, { id: identity(st), etag });
      return { etag };
    });
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    // Start the walk at the deepest folder the prefix names in full.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : '';
    if (prefix.startsWith('/') || (dirKey !== '' && !isValidKey(dirKey))) return []; // no key starts so
    const startDir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    const out: ObjectInfo[] = [];
    await this.walk(startDir, dirKey === '' ? '' : `${dirKey}/`, prefix, out);
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    await withLock(file, async () => {
      try {
        await unlink(file);
      } catch (err) {
        if (isAbsent(err) || errorCode(err) === 'EPERM') {
          // EPERM: unlink of a folder on some systems; a folder is not an object either.
          if ((await this.infoAt(file, key)) === undefined) return;
        }
        throw new PortError(`delete ${key} failed: ${(err as Error).message}`, { cause: err });
      } finally {
        this.etags.delete(file);
      }
      // Remove folders left empty, up to the root, so that `a` can later be stored as an object.
      for (let dir = dirname(file); dir !== this.root && dir.startsWith(this.root + sep); dir = dirname(dir)) {
        try {
          await rmdir(dir);
        } catch {
          break; // not empty (or gone): stop
        }
      }
    });
  }

  /** Absolute file path of a key; PortError for keys that are not clean relative paths. */
  private pathOf(key: string): string {
    if (!isValidKey(key)) {
      throw new PortError(
        `invalid key for FolderObjectStore: ${JSON.stringify(key)} (want '/'-separated relative path ` +
          `without empty, '.', '..' or '${TEMP_PREFIX}*' segments, backslashes or NUL)`,
      );
    }
    return join(this.root, ...key.split('/'));
  }

  private async openObject(file: string, key: string): Promise<FileHandle> {
    try {
      return await open(file, 'r');
    } catch (err) {
      throw this.wrap(err, 'open', key);
    }
  }

  /** Size and ETag of the regular file at `file`, or undefined when there is none. */
  private async infoAt(file: string, key: string): Promise<ObjectInfo | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw this.wrap(err, 'head', key);
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) return undefined;
      if (this.statEtags) return { key, size: Number(st.size), etag: statEtag(st) };
      const id = identity(st);
      let etag = this.etags.get(file)?.id === id ? this.etags.get(file)?.etag : undefined;
      if (etag === undefined) {
        etag = await hashHandle(fh);
        this.etags.set(file, { id, etag });
      }
      return { key, size: Number(st.size), etag };
    } catch (err) {
      throw this.wrap(err, 'head', key);
    } finally {
      await fh.close();
    }
  }

  /** Writes the bytes to a new temporary file in `dir`; returns its path and stats. */
  private async writeTemp(dir: string, bytes: Uint8Array, key: string): Promise<{ tmp: string; st: BigIntStats }> {
    const tmp = join(dir, `${TEMP_PREFIX}${randomUUID()}`);
    // A concurrent delete may remove a just-created empty folder: recreate it and retry.
    for (let attempt = 0; ; attempt++) {
      let fh: FileHandle | undefined;
      try {
        await mkdir(dir, { recursive: true });
        fh = await open(tmp, 'wx');
        await fh.writeFile(bytes);
        if (this.durable) await fh.sync();
        return { tmp, st: await fh.stat({ bigint: true }) };
      } catch (err) {
        if (fh) await rm(tmp, { force: true });
        if (errorCode(err) === 'ENOENT' && attempt < 3) continue;
        throw new PortError(`put ${key} failed: ${(err as Error).message}`, { cause: err });
      } finally {
        await fh?.close();
      }
    }
  }

  /** Moves tmp to file only if file does not exist (atomic even across processes). */
  private async linkIntoPlace(tmp: string, file: string, key: string): Promise<void> {
    try {
      await link(tmp, file);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'EEXIST') throw new PreconditionFailedError(key, { cause: err });
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') {
        // No hard links on this file system: the in-process check above has to do.
        await rename(tmp, file);
        return;
      }
      throw err;
    }
    await unlink(tmp);
  }

  private async walk(dirAbs: string, keyPrefix: string, prefix: string, out: ObjectInfo[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dirAbs, { withFileTypes: true });
    } catch (err) {
      if (isAbsent(err)) return;
      throw new PortError(`list ${prefix} failed: ${(err as Error).message}`, { cause: err });
    }
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_PREFIX)) continue;
      const key = keyPrefix + entry.name;
      const abs = join(dirAbs, entry.name);
      if (entry.isDirectory()) {
        const sub = `${key}/`;
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) await this.walk(abs, sub, prefix, out);
      } else if ((entry.isFile() || entry.isSymbolicLink()) && key.startsWith(prefix)) {
        const info = await this.infoAt(abs, key); // undefined for links to folders, or if deleted meanwhile
        if (info) out.push(info);
      }
    }
  }

  private wrap(err: unknown, op: string, key: string): Error {
    if (err instanceof PortError) return err;
    if (isAbsent(err)) return new NotFoundError(key, { cause: err });
    return new PortError(`${op} ${key} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

function isValidKey(key: string): boolean {
  if (typeof key !== 'string' || key === '' || key.includes('\\') || key.includes('\0')) return false;
  return key.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..' && !seg.startsWith(TEMP_PREFIX));
}

async function hashHandle(fh: FileHandle): Promise<string> {
  const hash = createHash('md5');
  const buf = Buffer.allocUnsafe(HASH_CHUNK);
  for (let pos = 0; ; ) {
    const { bytesRead } = await fh.read(buf, 0, HASH_CHUNK, pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return `"${hash.digest('hex')}"`;
}

/** fsync a folder so a rename in it survives a crash; not possible on every platform. */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Windows and some file systems cannot open or fsync folders; the rename is still atomic.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

