/**
 * Runs the ObjectStore contract against MemoryObjectStore, FolderObjectStore (in a temporary
 * folder) and S3ObjectStore over HTTP against the fauxqs emulator, bare (its gaps asserted) and
 * behind the conditions proxy the other emulator tests use (test/support/conditions-proxy.ts),
 * where S3ObjectStore's conditional puts get S3's answers over the wire; then checks a few things
 * specific to one implementation, and the emulator gaps that affect S3ObjectStore.
 */
import { mkdtemp, readdir, rm, writeFile, mkdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../adapters/aws/s3-object-store.js';
import { FolderObjectStore } from '../../lib/pipeline/folder-store.js';
import { MemoryObjectStore } from '../../lib/pipeline/memory-store.js';
import { NotFoundError, PortError, PreconditionFailedError } from '../../lib/pipeline/ports.js';
import { createBucket, startEmulator, uniqueName, type Emulator } from '../support/emulator.js';
import { objectStoreContract } from './object-store.contract.js';

const FAUXQS_CONDITIONS_NOTE = 'fauxqs 1.9.2 ignores If-Match / If-None-Match on PutObject (always overwrites)';

/** The bare emulator, for its gaps. */
let emulator: Emulator;
/** The emulator behind the conditions proxy, as the end-to-end tests use it. */
let conditional: Emulator;
beforeAll(async () => {
  emulator = await startEmulator({ conditionalWrites: false });
  conditional = await startEmulator();
});
afterAll(async () => {
  await emulator?.stop();
  await conditional?.stop();
});

async function tempFolder(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'clusterwise-store-'));
}

objectStoreContract('MemoryObjectStore', async () => ({
  store: new MemoryObjectStore(),
  enforcesConditions: true,
  cleanup: async () => undefined,
}));

objectStoreContract('FolderObjectStore', async () => {
  const dir = await tempFolder();
  return {
    store: new FolderObjectStore(dir),
    enforcesConditions: true,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

objectStoreContract("FolderObjectStore (etags: 'stat', durable: false)", async () => {
  const dir = await tempFolder();
  return {
    store: new FolderObjectStore(dir, { etags: 'stat', durable: false }),
    enforcesConditions: true,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

objectStoreContract('S3ObjectStore (bare fauxqs emulator)', async () => {
  const bucket = await createBucket(emulator.s3, uniqueName('store'));
  return {
    store: new S3ObjectStore({ client: emulator.s3, bucket }),
    enforcesConditions: false,
    conditionsNote: FAUXQS_CONDITIONS_NOTE,
    cleanup: async () => emulator.server.emptyBucket(bucket),
  };
});

objectStoreContract('S3ObjectStore (fauxqs emulator behind the conditions proxy)', async () => {
  const bucket = await createBucket(conditional.s3, uniqueName('cond'));
  return {
    store: new S3ObjectStore({ client: conditional.s3, bucket }),
    enforcesConditions: true,
    cleanup: async () => conditional.server.emptyBucket(bucket),
  };
});

describe('FolderObjectStore specifics', () => {
  let dir: string;
  let store: FolderObjectStore;
  beforeAll(async () => {
    dir = await tempFolder();
    store = new FolderObjectStore(dir);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(['', '/abs', '../escape', 'a/../../b', 'a//b', 'a/', './a', 'a\\b', 'nul\0', 'x/.clusterwise-tmp-1'])(
    'rejects the key %j with PortError',
    async (key) => {
      await expect(store.put(key, 'x')).rejects.toBeInstanceOf(PortError);
      await expect(store.get(key)).rejects.toBeInstanceOf(PortError);
    },
  );

  it('lists nothing for prefixes that would leave the folder', async () => {
    await store.put('inside', 'x');
    expect(await store.list('../')).toEqual([]);
    expect(await store.list('/')).toEqual([]);
  });

  it('leaves no temporary files behind, also after failed conditional puts', async () => {
    const sub = 'tmpcheck';
    const { etag } = await store.put(`${sub}/k`, 'v1');
    await store.put(`${sub}/k`, 'v2', { ifMatch: etag }).catch(() => undefined);
    await store.put(`${sub}/k`, 'v3', { ifMatch: '"stale"' }).catch(() => undefined);
    await store.put(`${sub}/k`, 'v4', { ifNoneMatch: '*' }).catch(() => undefined);
    expect(await readdir(join(dir, sub))).toEqual(['k']);
  });

  it('sees files written by others, and notices when they change', async () => {
    await mkdir(join(dir, 'external'), { recursive: true });
    await writeFile(join(dir, 'external', 'data.csv'), 'a,b\n1,2\n');
    const mem = new MemoryObjectStore();
    const expected = (await mem.put('x', 'a,b\n1,2\n')).etag;
    expect(await store.head('external/data.csv')).toEqual({ key: 'external/data.csv', size: 8, etag: expected });
    await writeFile(join(dir, 'external', 'data.csv'), 'a,b\n3,4\n'); // same size, new content
    const changed = await store.head('external/data.csv');
    expect(changed?.etag).toBe((await mem.put('x', 'a,b\n3,4\n')).etag);
    await expect(store.put('external/data.csv', 'lost update', { ifMatch: expected })).rejects.toBeInstanceOf(
      PreconditionFailedError,
    );
  });

  it('follows symlinks to files when listing', async () => {
    await writeFile(join(dir, 'target.csv'), 'linked');
    await mkdir(join(dir, 'links'), { recursive: true });
    await symlink(join(dir, 'target.csv'), join(dir, 'links', 'l.csv'));
    expect((await store.list('links/')).map((o) => [o.key, o.size])).toEqual([['links/l.csv', 6]]);
    expect(new TextDecoder().decode((await store.get('links/l.csv')).body)).toBe('linked');
  });

  it('two stores on one folder serialize conditional puts', async () => {
    const other = new FolderObjectStore(dir);
    const base = await store.put('shared/cas', 'base');
    const results = await Promise.allSettled([
      store.put('shared/cas', 'one', { ifMatch: base.etag }),
      other.put('shared/cas', 'two', { ifMatch: base.etag }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it("with etags: 'stat' reads nothing to make an ETag, and still sees changes", async () => {
    const statStore = new FolderObjectStore(dir, { etags: 'stat' });
    await writeFile(join(dir, 'big-input.csv'), 'x'.repeat(1000));
    const before = await statStore.head('big-input.csv');
    expect(before?.etag).toMatch(/^"3e8-[0-9a-f]+-[0-9a-f]+"$/);
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(join(dir, 'big-input.csv'), 'y'.repeat(1000));
    expect((await statStore.head('big-input.csv'))?.etag).not.toBe(before?.etag);
  });

  it('works with durable: false', async () => {
    const fast = new FolderObjectStore(dir, { durable: false });
    await fast.put('fast/x', 'quick');
    expect(new TextDecoder().decode((await fast.get('fast/x')).body)).toBe('quick');
  });
});

describe('ETags agree across stores (MD5, as S3 computes for single-part uploads)', () => {
  it('memory, folder and S3 give the same ETag for the same bytes', async () => {
    const dir = await tempFolder();
    try {
      const bucket = await createBucket(emulator.s3, uniqueName('etag'));
      const body = 'the same bytes everywhere\n';
      const tags = await Promise.all([
        new MemoryObjectStore().put('k', body),
        new FolderObjectStore(dir).put('k', body),
        new S3ObjectStore({ client: emulator.s3, bucket }).put('k', body),
      ]);
      expect(new Set(tags.map((t) => t.etag)).size).toBe(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('S3ObjectStore against the emulator', () => {
  it('lists every page (page size 2)', async () => {
    const bucket = await createBucket(emulator.s3, uniqueName('pages'));
    const store = new S3ObjectStore({ client: emulator.s3, bucket, pageSize: 2 });
    const keys = ['p/a', 'p/b', 'p/c', 'p/d/e', 'p/d/f', 'p/g', 'p/h'];
    for (const k of keys) await store.put(k, k);
    await store.put('q/other', 'x');
    expect((await store.list('p/')).map((o) => o.key)).toEqual(keys);
  });

  it('maps a missing bucket to PortError, not NotFoundError', async () => {
    const store = new S3ObjectStore({ client: emulator.s3, bucket: uniqueName('nobucket') });
    const err = await store.get('k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as PortError).cause).toBeDefined();
  });

  it('keeps the SDK error as cause of NotFoundError', async () => {
    const bucket = await createBucket(emulator.s3, uniqueName('cause'));
    const err = await new S3ObjectStore({ client: emulator.s3, bucket }).get('missing').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).cause).toMatchObject({ name: 'NoSuchKey' });
  });

  it('emulator gap: paged listings lose and repeat keys whose case or punctuation sorts differently', async () => {
    const bucket = await createBucket(emulator.s3, uniqueName('gap'));
    const store = new S3ObjectStore({ client: emulator.s3, bucket, pageSize: 2 });
    const keys = ['p/B', 'p/a', 'p/C', 'p/b', 'p/_x', 'p/-y', 'p/Z'];
    for (const k of keys) await store.put(k, k);
    const listed = (await store.list('p/')).map((o) => o.key);
    // Real S3 returns all 7 in byte order. If this starts failing, fauxqs fixed its listing:
    // update the note in object-store.contract.ts.
    expect(listed).not.toEqual([...keys].sort());
    expect(new Set(listed).size < keys.length || listed.length !== keys.length).toBe(true);
    // With one page everything comes back, in the right order (S3ObjectStore sorts).
    const onePage = new S3ObjectStore({ client: emulator.s3, bucket });
    expect((await onePage.list('p/')).map((o) => o.key)).toEqual(['p/-y', 'p/B', 'p/C', 'p/Z', 'p/_x', 'p/a', 'p/b']);
  });
});
