/**
 * In-memory ObjectStore: a Map from key to bytes. For tests and for local runs that need no files.
 *
 * ETags are the quoted MD5 hex of the content, exactly what S3 returns for a single-part
 * PutObject, so the same bytes get the same ETag here, in FolderObjectStore and in S3.
 * Like S3, rewriting identical bytes therefore keeps the ETag (an If-Match holder cannot tell).
 *
 * Bodies are copied on the way in and out: callers may reuse or mutate their buffers.
 */
import { createHash } from 'node:crypto';
import {
  NotFoundError,
  PreconditionFailedError,
  type GetResult,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './ports.js';

/**
 * Orders keys as S3 does: by the UTF-8 bytes (equivalently, by code point). Plain `<` on JS
 * strings compares UTF-16 code units, which puts U+10000 and above (surrogate pairs) before
 * U+E000–U+FFFF; this corrects that.
 */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codeUnitRank(x) - codeUnitRank(y);
  }
  return a.length - b.length;
}

function codeUnitRank(u: number): number {
  if (u < 0xd800) return u;
  if (u <= 0xdfff) return u + 0x2000; // surrogate: part of a code point above U+FFFF
  return u - 0x800; // U+E000–U+FFFF: below every supplementary code point
}

/** The quoted MD5 hex of the bytes: S3's ETag for a single-part upload. */
export function contentEtag(body: Uint8Array): string {
  return `"${createHash('md5').update(body).digest('hex')}"`;
}

/** UTF-8 bytes of a string body; a copy of a byte body. */
export function toBytes(body: Uint8Array | string): Uint8Array {
  return typeof body === 'string' ? new Uint8Array(Buffer.from(body, 'utf8')) : new Uint8Array(body);
}

/**
 * Checks getRange arguments (shared by the stores so that they reject the same things):
 * start a non-negative integer, end a non-negative integer or Infinity ("to the end").
 * Returns true when the range is empty (start >= end): the stores then answer [] without
 * looking at the object.
 */
export function checkRange(key: string, start: number, end: number): boolean {
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new RangeError(`getRange(${key}): start must be a non-negative integer, got ${start}`);
  }
  if (!(Number.isSafeInteger(end) || end === Number.POSITIVE_INFINITY) || end < 0) {
    throw new RangeError(`getRange(${key}): end must be a non-negative integer or Infinity, got ${end}`);
  }
  return start >= end;
}

interface StoredObject {
  body: Uint8Array;
  etag: string;
  contentType?: string;
}

export class MemoryObjectStore implements ObjectStore {
  private readonly objects = new Map<string, StoredObject>();

  async get(key: string): Promise<GetResult> {
    const obj = this.objects.get(key);
    if (!obj) throw new NotFoundError(key);
    return { body: obj.body.slice(), etag: obj.etag };
  }

  async getRange(key: string, start: number, end: number, options: { ifMatch?: string } = {}): Promise<Uint8Array> {
    if (checkRange(key, start, end)) return new Uint8Array(0);
    const obj = this.objects.get(key);
    if (!obj) throw new NotFoundError(key);
    if (options.ifMatch !== undefined && obj.etag !== options.ifMatch) throw new PreconditionFailedError(key);
    return obj.body.slice(Math.min(start, obj.body.length), Math.min(end, obj.body.length));
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const obj = this.objects.get(key);
    return obj && { key, size: obj.body.length, etag: obj.etag };
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    // Check and write happen in one synchronous step, so concurrent puts are linearizable.
    const current = this.objects.get(key);
    if (options.ifNoneMatch === '*' && current) throw new PreconditionFailedError(key);
    if (options.ifMatch !== undefined && current?.etag !== options.ifMatch) {
      throw new PreconditionFailedError(key);
    }
    const bytes = toBytes(body);
    const etag = contentEtag(bytes);
    this.objects.set(key, { body: bytes, etag, contentType: options.contentType });
    return { etag };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for (const [key, obj] of this.objects) {
      if (key.startsWith(prefix)) out.push({ key, size: obj.body.length, etag: obj.etag });
    }
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
}
