/**
 * ObjectStore on one S3 bucket (AWS SDK v3). A plain adapter: one request per call (list: one
 * per page), errors mapped to the port's classes with the SDK error kept as `cause`.
 *
 * ETags are passed through as S3 returns them (quoted MD5 hex for single-part uploads).
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  NotFoundError,
  PortError,
  PreconditionFailedError,
  type GetResult,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from '../../lib/pipeline/ports.js';
import { checkRange, compareKeys } from '../../lib/pipeline/memory-store.js';

export interface S3ObjectStoreOptions {
  /** The SDK client (region, credentials, endpoint are its business). */
  readonly client: S3Client;
  /** Bucket holding every key. */
  readonly bucket: string;
  /** MaxKeys per ListObjectsV2 page. @default 1000 (the S3 maximum) */
  readonly pageSize?: number;
}

interface SdkError {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function asSdkError(err: unknown): SdkError {
  return typeof err === 'object' && err !== null ? (err as SdkError) : {};
}

function statusOf(err: unknown): number | undefined {
  return asSdkError(err).$metadata?.httpStatusCode;
}

function codeOf(err: unknown): string | undefined {
  const e = asSdkError(err);
  return e.Code ?? e.name;
}

function isNotFound(err: unknown): boolean {
  const code = codeOf(err);
  if (code === 'NoSuchBucket') return false; // a configuration error, not a missing object
  return code === 'NoSuchKey' || code === 'NotFound' || statusOf(err) === 404;
}

function isPreconditionFailed(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'PreconditionFailed' || code === 'ConditionalRequestConflict' || statusOf(err) === 412 || statusOf(err) === 409;
}

/** A plain Uint8Array (not a Buffer subclass) over the bytes. */
function plain(bytes: Uint8Array): Uint8Array {
  return bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly pageSize: number;

  constructor(options: S3ObjectStoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.pageSize = options.pageSize ?? 1000;
    if (!this.bucket) throw new RangeError('S3ObjectStore: bucket is required');
    if (!(Number.isInteger(this.pageSize) && this.pageSize >= 1 && this.pageSize <= 1000)) {
      throw new RangeError(`S3ObjectStore: pageSize must be an integer in 1..1000, got ${this.pageSize}`);
    }
  }

  async get(key: string): Promise<GetResult> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const body = out.Body ? plain(await out.Body.transformToByteArray()) : new Uint8Array(0);
      return { body, etag: out.ETag ?? '' };
    } catch (err) {
      throw this.mapError(err, 'GetObject', key);
    }
  }

  async getRange(key: string, start: number, end: number, options: { ifMatch?: string } = {}): Promise<Uint8Array> {
    if (checkRange(key, start, end)) return new Uint8Array(0);
    const range = end === Number.POSITIVE_INFINITY ? `bytes=${start}-` : `bytes=${start}-${end - 1}`;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range, IfMatch: options.ifMatch }));
      const body = out.Body ? plain(await out.Body.transformToByteArray()) : new Uint8Array(0);
      // A server that ignored the Range header sent the whole object (200): cut it here.
      return out.ContentRange === undefined && body.length > end - start ? body.slice(start, end) : body;
    } catch (err) {
      // 416: the range starts at or after the end (S3 answers so for any range of an empty object).
      if (statusOf(err) === 416 || codeOf(err) === 'InvalidRange') return new Uint8Array(0);
      throw this.mapError(err, 'GetObject', key);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: out.ContentLength ?? 0, etag: out.ETag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.mapError(err, 'HeadObject', key);
    }
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const conditional = options.ifMatch !== undefined || options.ifNoneMatch !== undefined;
    try {
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
          ContentType: options.contentType,
          Tagging: options.tags ? new URLSearchParams(options.tags).toString() : undefined,
          IfMatch: options.ifMatch,
          IfNoneMatch: options.ifNoneMatch,
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (err) {
      // If-Match on a key with no object: S3 answers 404 NoSuchKey; for the port the condition failed.
      if (conditional && (isPreconditionFailed(err) || (options.ifMatch !== undefined && isNotFound(err)))) {
        throw new PreconditionFailedError(key, { cause: err });
      }
      throw this.mapError(err, 'PutObject', key);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.pageSize }),
        );
      } catch (err) {
        throw this.mapError(err, 'ListObjectsV2', prefix);
      }
      for (const obj of page.Contents ?? []) {
        if (obj.Key !== undefined) out.push({ key: obj.Key, size: obj.Size ?? 0, etag: obj.ETag ?? '' });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    // S3 already lists in UTF-8 byte order; sorting again costs little and protects against
    // emulators that do not (fauxqs sorts with localeCompare).
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.mapError(err, 'DeleteObject', key);
    }
  }

  private mapError(err: unknown, op: string, key: string): Error {
    if (isNotFound(err)) return new NotFoundError(key, { cause: err });
    if (isPreconditionFailed(err) && statusOf(err) === 412) return new PreconditionFailedError(key, { cause: err });
    const e = asSdkError(err);
    const what = [codeOf(err), statusOf(err)].filter((x) => x !== undefined).join(' ');
    return new PortError(`S3 ${op} s3://${this.bucket}/${key} failed${what ? ` (${what})` : ''}: ${e.message ?? String(err)}`, {
      cause: err,
    });
  }
}
