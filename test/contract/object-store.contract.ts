/**
 * The ObjectStore contract: one suite, run against every implementation (object-store.test.ts).
 *
 * What real S3 / SQS guarantee that the emulator (fauxqs 1.9.2, used by the S3/SQS runs of these
 * suites and by end-to-end tests through test/support/emulator.ts) does not — checked against its
 * source (node_modules/fauxqs/dist) and by the tests marked "emulator gap":
 *
 * S3
 * - Conditional writes. PutObject ignores If-Match and If-None-Match and always overwrites. Real
 *   S3 answers 412 PreconditionFailed (ETag differs, or If-None-Match: * and the key exists),
 *   404 NoSuchKey (If-Match on a missing key) and 409 ConditionalRequestConflict (a concurrent
 *   conditional write won). The conditional cases below are skipped for the bare emulator, and
 *   one test asserts that it overwrites; test/support/conditions-proxy.ts, in front of the
 *   emulator by default (test/support/emulator.ts), answers conditional puts as S3 does, and the
 *   suite runs against it too. (GetObject does honour If-Match, ranged or not.)
 * - Event notifications. No bucket notification configuration and no ObjectCreated events to
 *   SQS or Lambda: the ingest trigger has to be simulated by invoking the handler with a
 *   synthetic S3 event.
 * - Listing order and pagination. Keys are sorted with localeCompare, not by UTF-8 bytes, while
 *   the continuation token compares UTF-16 code units; when the two orders disagree (upper vs
 *   lower case, '-' vs '_'), paged listings drop and repeat keys (8 keys, MaxKeys 2: 6 returned,
 *   one twice, 'B', 'C', 'Z' lost). S3ObjectStore re-sorts every listing, which fixes the order
 *   but cannot recover lost keys: keep the default page size (1000) in emulator tests.
 * - Not emulated at all: lifecycle rules (expiring the large-payload prefix), IAM and bucket
 *   policies, SSE-KMS, request throttling (503 SlowDown), checksums in responses.
 *
 * SQS
 * - Timing is exact where SQS is approximate. Visibility deadlines are checked with Date.now()
 *   on every receive (every 20 ms during a long poll); real SQS may return a message a little
 *   after its timeout, and standard queues may deliver a message twice, even to concurrent
 *   receivers before the timeout, or out of order. The emulator never duplicates a delivery, so
 *   idempotency (a duplicate message changes nothing) must be tested by sending duplicates.
 * - Counts are exact: ApproximateNumberOfMessages(NotVisible) and ApproximateReceiveCount are
 *   eventually consistent on AWS (depth can lag by up to a minute).
 * - Dead-letter queue: the move happens on the receive after the maxReceiveCount-th delivery,
 *   as on AWS (so a poison message sits in the source queue, counted by depth, until someone
 *   receives again). fauxqs keeps the message id and carries the receive count on in the DLQ;
 *   do not rely on either.
 * - FIFO: ReceiveMessage returns at most one message per message group per call; real SQS may
 *   return several of one group (in order). Code must not rely on either.
 * - Message bodies: characters above U+FFFF (emoji) are rejected with InvalidMessageContents;
 *   SQS accepts #x10000–#x10FFFF. The maximum size is 1 MiB (AWS default since 2025; queues
 *   created earlier may still say 256 KiB).
 * - DeleteMessage with a stale or made-up receipt handle silently succeeds (SQS rejects malformed
 *   handles with ReceiptHandleIsInvalid); ChangeMessageVisibility on a message not in flight
 *   fails with MessageNotInflight, as on AWS (SqsQueue.release treats that as a no-op).
 * - No Lambda event source mapping: nothing delivers messages to handlers (batch size, batching
 *   window, ReportBatchItemFailures, maximum concurrency); tests poll and call handlers.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError, PreconditionFailedError, type ObjectStore } from '../../lib/pipeline/ports.js';

export interface ObjectStoreFixture {
  /** A store with no objects. */
  store: ObjectStore;
  /** Whether put honours ifMatch / ifNoneMatch. */
  enforcesConditions: boolean;
  /** Why conditions are not enforced (reported with the skipped tests). */
  conditionsNote?: string;
  /** Frees what makeStore created. */
  cleanup(): Promise<void>;
}

const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/** Deterministic pseudo-random bytes. */
function pattern(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** S3 key order: UTF-8 bytes. */
const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

export function objectStoreContract(name: string, makeStore: () => Promise<ObjectStoreFixture>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let fx: ObjectStoreFixture;
    let store: ObjectStore;

    beforeEach(async () => {
      fx = await makeStore();
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    describe('get, head, put, delete', () => {
      it('put then get returns the bytes and the ETag put returned', async () => {
        const { etag } = await store.put('a/b.bin', utf8('hello'));
        expect(etag).toBeTruthy();
        const got = await store.get('a/b.bin');
        expect(text(got.body)).toBe('hello');
        expect(got.etag).toBe(etag);
      });

      it('stores string bodies as UTF-8', async () => {
        const s = 'naïve café, 中文, ﬁ, 😀';
        await store.put('s.txt', s);
        const got = await store.get('s.txt');
        expect(got.body.length).toBe(Buffer.byteLength(s, 'utf8'));
        expect(text(got.body)).toBe(s);
      });

      it('round-trips every byte value, and returns a plain Uint8Array', async () => {
        const body = new Uint8Array(512).map((_, i) => i % 256);
        await store.put('bin', body);
        const got = await store.get('bin');
        expect(got.body.constructor).toBe(Uint8Array);
        expect(Array.from(got.body)).toEqual(Array.from(body));
      });

      it('is not affected by later changes to the caller buffer', async () => {
        const body = utf8('abc');
        await store.put('k', body);
        body[0] = 120;
        expect(text((await store.get('k')).body)).toBe('abc');
      });

      it('head gives size and the ETag of get and list; undefined when absent', async () => {
        const { etag } = await store.put('h/x', pattern(1234));
        expect(await store.head('h/x')).toEqual({ key: 'h/x', size: 1234, etag });
        expect((await store.get('h/x')).etag).toBe(etag);
        expect(await store.list('h/')).toEqual([{ key: 'h/x', size: 1234, etag }]);
        expect(await store.head('h/missing')).toBeUndefined();
        expect(await store.head('h')).toBeUndefined(); // a prefix is not an object
      });

      it('get and getRange of a missing key throw NotFoundError naming the key', async () => {
        await store.put('present', 'x');
        const get = await store.get('absent/key').catch((e: unknown) => e);
        expect(get).toBeInstanceOf(NotFoundError);
        expect((get as NotFoundError).key).toBe('absent/key');
        const range = await store.getRange('absent/key', 0, 10).catch((e: unknown) => e);
        expect(range).toBeInstanceOf(NotFoundError);
        expect((range as NotFoundError).key).toBe('absent/key');
      });

      it('overwriting replaces the bytes and changes the ETag', async () => {
        const first = await store.put('o', 'version one');
        const second = await store.put('o', 'version two!');
        expect(second.etag).not.toBe(first.etag);
        const got = await store.get('o');
        expect(text(got.body)).toBe('version two!');
        expect(got.etag).toBe(second.etag);
        expect((await store.head('o'))?.size).toBe(12);
      });

      it('keeps the ETag while the object is unchanged', async () => {
        const { etag } = await store.put('stable', pattern(100));
        expect((await store.head('stable'))?.etag).toBe(etag);
        expect((await store.head('stable'))?.etag).toBe(etag);
        expect((await store.get('stable')).etag).toBe(etag);
      });

      it('stores empty objects', async () => {
        await store.put('empty', new Uint8Array(0));
        expect((await store.get('empty')).body.length).toBe(0);
        expect((await store.head('empty'))?.size).toBe(0);
        expect((await store.getRange('empty', 0, 10)).length).toBe(0);
        expect((await store.list('empty')).map((o) => o.key)).toEqual(['empty']);
      });

      it('delete removes the object; deleting a missing key succeeds', async () => {
        await store.put('d/1', 'x');
        await store.put('d/2', 'y');
        await store.delete('d/1');
        expect(await store.head('d/1')).toBeUndefined();
        await expect(store.get('d/1')).rejects.toBeInstanceOf(NotFoundError);
        expect((await store.list('d/')).map((o) => o.key)).toEqual(['d/2']);
        await expect(store.delete('d/1')).resolves.toBeUndefined();
        await expect(store.delete('never/was')).resolves.toBeUndefined();
      });

      it('after the last object under a prefix is deleted, the prefix itself can be a key', async () => {
        await store.put('p/q/r', 'deep');
        await store.delete('p/q/r');
        await store.put('p/q', 'now a leaf');
        expect(text((await store.get('p/q')).body)).toBe('now a leaf');
        expect((await store.list('p/')).map((o) => o.key)).toEqual(['p/q']);
      });

      it('handles keys with spaces, unicode and URL-special characters', async () => {
        const key = 'odd/my file+(1)=ü&%20?x#y;z@.csv';
        const { etag } = await store.put(key, 'odd');
        expect(text((await store.get(key)).body)).toBe('odd');
        expect(await store.head(key)).toEqual({ key, size: 3, etag });
        expect(text(await store.getRange(key, 1, 3))).toBe('dd');
        expect((await store.list('odd/my file+')).map((o) => o.key)).toEqual([key]);
        await store.delete(key);
        expect(await store.head(key)).toBeUndefined();
      });

      it('concurrent unconditional puts leave one complete version', async () => {
        const bodies = Array.from({ length: 8 }, (_, i) => pattern(64 * 1024, i + 1));
        const results = await Promise.all(bodies.map((b) => store.put('race', b)));
        const got = await store.get('race');
        const winner = bodies.findIndex((b) => Buffer.from(b).equals(Buffer.from(got.body)));
        expect(winner).toBeGreaterThanOrEqual(0);
        expect(got.etag).toBe(results[winner].etag);
        expect((await store.head('race'))?.etag).toBe(got.etag);
      });
    });

    describe('getRange', () => {
      const hundred = new Uint8Array(100).map((_, i) => i);

      it('returns bytes [start, end)', async () => {
        await store.put('r', hundred);
        expect(Array.from(await store.getRange('r', 10, 20))).toEqual(Array.from(hundred.slice(10, 20)));
        expect(Array.from(await store.getRange('r', 0, 1))).toEqual([0]);
        expect(Array.from(await store.getRange('r', 99, 100))).toEqual([99]);
        expect((await store.getRange('r', 0, 100)).constructor).toBe(Uint8Array);
      });

      it('clamps the end to the size; a start at or past the end gives no bytes', async () => {
        await store.put('r', hundred);
        expect(Array.from(await store.getRange('r', 90, 1000))).toEqual(Array.from(hundred.slice(90)));
        expect(Array.from(await store.getRange('r', 0, Number.POSITIVE_INFINITY))).toEqual(Array.from(hundred));
        expect((await store.getRange('r', 100, 110)).length).toBe(0);
        expect((await store.getRange('r', 500, 600)).length).toBe(0);
      });

      it('an empty range (start >= end) is empty, without looking for the object', async () => {
        await store.put('r', hundred);
        expect((await store.getRange('r', 5, 5)).length).toBe(0);
        expect((await store.getRange('r', 7, 3)).length).toBe(0);
        expect((await store.getRange('no/such/key', 5, 5)).length).toBe(0);
      });

      it('rejects negative or fractional offsets with RangeError', async () => {
        await store.put('r', hundred);
        await expect(store.getRange('r', -1, 5)).rejects.toBeInstanceOf(RangeError);
        await expect(store.getRange('r', 1.5, 5)).rejects.toBeInstanceOf(RangeError);
        await expect(store.getRange('r', 0, Number.NaN)).rejects.toBeInstanceOf(RangeError);
      });

      it('reads ranges of a multi-megabyte object', async () => {
        const big = pattern(3 * 1024 * 1024 + 17, 7);
        await store.put('big.csv', big);
        const mid = await store.getRange('big.csv', 1_000_003, 2_000_011);
        expect(Buffer.from(mid).equals(Buffer.from(big.subarray(1_000_003, 2_000_011)))).toBe(true);
        const tail = await store.getRange('big.csv', big.length - 5, big.length + 5);
        expect(Array.from(tail)).toEqual(Array.from(big.subarray(big.length - 5)));
      });
    });

    describe('list', () => {
      const keys = [
        'datasets/b/data/2.csv',
        'datasets/b/data/10.csv',
        'datasets/a/model.json',
        'datasets/B/x',
        'datasets/a-b/y',
        'datasets/a_b/z',
        'runs/a/1/state.json',
        'datasetsX',
      ];

      beforeEach(async () => {
        for (const [i, key] of keys.entries()) await store.put(key, 'x'.repeat(i + 1));
      });

      it('returns every object under the prefix, in S3 key order, with size and ETag', async () => {
        const listed = await store.list('datasets/');
        const expected = keys.filter((k) => k.startsWith('datasets/')).sort(byteOrder);
        expect(listed.map((o) => o.key)).toEqual(expected);
        expect(expected).toEqual([
          'datasets/B/x',
          'datasets/a-b/y',
          'datasets/a/model.json',
          'datasets/a_b/z',
          'datasets/b/data/10.csv',
          'datasets/b/data/2.csv',
        ]);
        for (const o of listed) {
          expect(o.size).toBe(keys.indexOf(o.key) + 1);
          expect(o.etag).toBe((await store.head(o.key))?.etag);
        }
      });

      it('matches prefixes that end inside a path segment', async () => {
        expect((await store.list('datasets/a')).map((o) => o.key)).toEqual([
          'datasets/a-b/y',
          'datasets/a/model.json',
          'datasets/a_b/z',
        ]);
        expect((await store.list('datasets/b/data/1')).map((o) => o.key)).toEqual(['datasets/b/data/10.csv']);
        expect((await store.list('datasets')).map((o) => o.key)).toEqual([...keys.filter((k) => k.startsWith('datasets'))].sort(byteOrder));
        expect((await store.list('runs/a/1/state.json')).map((o) => o.key)).toEqual(['runs/a/1/state.json']);
      });

      it('with an empty prefix lists everything; an unmatched prefix lists nothing', async () => {
        expect((await store.list('')).map((o) => o.key)).toEqual([...keys].sort(byteOrder));
        expect(await store.list('nothing/')).toEqual([]);
        expect(await store.list('datasets/b/data/2.csv/')).toEqual([]);
      });

      it('orders by UTF-8 bytes (code points), not UTF-16 code units', async () => {
        await store.put('u/\u{1F600}', 'emoji'); // F0 9F 98 80
        await store.put('u/\uFF21', 'fullwidth A'); // EF BC A1: first in UTF-8, last in UTF-16
        await store.put('u/z', 'z');
        expect((await store.list('u/')).map((o) => o.key)).toEqual(['u/z', 'u/\uFF21', 'u/\u{1F600}']);
      });
    });

    describe('conditional ranged reads', () => {
      it('getRange with ifMatch reads only the named version', async () => {
        const v1 = await store.put('r/data.csv', 'a,b\n1,2\n');
        expect(text(await store.getRange('r/data.csv', 4, 7, { ifMatch: v1.etag }))).toBe('1,2');
        await store.put('r/data.csv', 'a,b\n3,4\n5,6\n');
        const err = await store.getRange('r/data.csv', 4, 7, { ifMatch: v1.etag }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(PreconditionFailedError);
        expect((err as PreconditionFailedError).key).toBe('r/data.csv');
      });
    });

    describe('conditional puts', () => {
      it('ifNoneMatch "*" creates only when the key is free', async (ctx) => {
        ctx.skip(!fx.enforcesConditions, fx.conditionsNote);
        const { etag } = await store.put('c/new', 'first', { ifNoneMatch: '*' });
        const err = await store.put('c/new', 'second', { ifNoneMatch: '*' }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(PreconditionFailedError);
        expect((err as PreconditionFailedError).key).toBe('c/new');
        const got = await store.get('c/new');
        expect(text(got.body)).toBe('first');
        expect(got.etag).toBe(etag);
      });

      it('ifMatch writes only over the named ETag', async (ctx) => {
        ctx.skip(!fx.enforcesConditions, fx.conditionsNote);
        const v1 = await store.put('c/state', 'v1');
        const v2 = await store.put('c/state', 'v2', { ifMatch: v1.etag });
        expect(text((await store.get('c/state')).body)).toBe('v2');
        await expect(store.put('c/state', 'stale writer', { ifMatch: v1.etag })).rejects.toBeInstanceOf(PreconditionFailedError);
        const got = await store.get('c/state');
        expect(text(got.body)).toBe('v2');
        expect(got.etag).toBe(v2.etag);
        await expect(store.put('c/state', 'v3', { ifMatch: v2.etag })).resolves.toMatchObject({ etag: expect.any(String) });
      });

      it('ifMatch on a missing key fails', async (ctx) => {
        ctx.skip(!fx.enforcesConditions, fx.conditionsNote);
        const { etag } = await store.put('c/other', 'x');
        await expect(store.put('c/missing', 'y', { ifMatch: etag })).rejects.toBeInstanceOf(PreconditionFailedError);
        expect(await store.head('c/missing')).toBeUndefined();
      });

      it('of concurrent ifMatch writers on one ETag exactly one wins', async (ctx) => {
        ctx.skip(!fx.enforcesConditions, fx.conditionsNote);
        const base = await store.put('c/cas', 'base');
        const bodies = Array.from({ length: 8 }, (_, i) => `writer ${i}`);
        const results = await Promise.allSettled(bodies.map((b) => store.put('c/cas', b, { ifMatch: base.etag })));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        expect(won).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PreconditionFailedError);
        expect(text((await store.get('c/cas')).body)).toBe(bodies[won[0]]);
      });

      it('of concurrent ifNoneMatch creators exactly one wins', async (ctx) => {
        ctx.skip(!fx.enforcesConditions, fx.conditionsNote);
        const bodies = Array.from({ length: 8 }, (_, i) => `creator ${i}`);
        const results = await Promise.allSettled(bodies.map((b) => store.put('c/once', b, { ifNoneMatch: '*' })));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        expect(won).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PreconditionFailedError);
        expect(text((await store.get('c/once')).body)).toBe(bodies[won[0]]);
      });

      it('emulator gap: a store that does not enforce conditions overwrites silently', async (ctx) => {
        ctx.skip(fx.enforcesConditions, 'this store enforces conditions');
        const v1 = await store.put('c/gap', 'v1');
        await store.put('c/gap', 'v2');
        await expect(store.put('c/gap', 'v3', { ifNoneMatch: '*' })).resolves.toBeDefined();
        await expect(store.put('c/gap', 'v4', { ifMatch: v1.etag })).resolves.toBeDefined();
        expect(text((await store.get('c/gap')).body)).toBe('v4');
      });
    });
  });
}
