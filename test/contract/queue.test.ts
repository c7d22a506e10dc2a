/**
 * Runs the Queue contract against MemoryQueue (fake clock), MemoryQueue wrapped by
 * withLargePayloads (so most bodies travel as pointers), and SqsQueue over HTTP against the
 * fauxqs emulator (real time, 1 s visibility timeout); then implementation specifics and the
 * emulator gaps that affect SqsQueue.
 */
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../adapters/aws/s3-object-store.js';
import { SqsQueue } from '../../adapters/aws/sqs-queue.js';
import { LargePayloadError, offloadPayload, pointerKey, resolvePayload, withLargePayloads } from '../../lib/pipeline/large-payloads.js';
import { MemoryObjectStore } from '../../lib/pipeline/memory-store.js';
import { DEDUPLICATION_WINDOW_MS, MemoryQueue } from '../../lib/pipeline/memory-queue.js';
import { PortError } from '../../lib/pipeline/ports.js';
import { createBucket, createQueue, createQueueWithDeadLetter, startEmulator, uniqueName, type Emulator } from '../support/emulator.js';
import { queueContract, type QueueFixture } from './queue.contract.js';

const VISIBILITY = 1;
const MAX_RECEIVES = 2;

let emulator: Emulator;
beforeAll(async () => {
  emulator = await startEmulator();
});
afterAll(async () => {
  await emulator?.stop();
});

/** A clock that follows real time and can be moved ahead. */
function fakeClock() {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance: async (seconds: number) => {
      offset += seconds * 1000 + 1;
    },
  };
}

function memoryQueues(): Omit<QueueFixture, 'cleanup'> & { clock: ReturnType<typeof fakeClock> } {
  const clock = fakeClock();
  const deadLetter = new MemoryQueue({ name: 'dlq', now: clock.now });
  const queue = new MemoryQueue({
    name: 'tasks',
    visibilityTimeoutSeconds: VISIBILITY,
    maxReceiveCount: MAX_RECEIVES,
    deadLetter,
    now: clock.now,
  });
  const fifo = new MemoryQueue({ name: 'updates.fifo', fifo: true, visibilityTimeoutSeconds: VISIBILITY, now: clock.now });
  return { clock, queue, deadLetter, fifo, visibilityTimeoutSeconds: VISIBILITY, maxReceiveCount: MAX_RECEIVES, advance: clock.advance };
}

queueContract('MemoryQueue', async () => ({ ...memoryQueues(), cleanup: async () => undefined }));

queueContract('withLargePayloads(MemoryQueue, MemoryObjectStore, maxInlineBytes 64)', async () => {
  const m = memoryQueues();
  const store = new MemoryObjectStore();
  const wrap = (q: MemoryQueue) => withLargePayloads(q, store, { prefix: 'payloads', maxInlineBytes: 64 });
  return {
    ...m,
    queue: wrap(m.queue as MemoryQueue),
    deadLetter: wrap(m.deadLetter as MemoryQueue),
    fifo: wrap(m.fifo as MemoryQueue),
    cleanup: async () => undefined,
  };
});

queueContract('SqsQueue (fauxqs emulator)', async () => {
  const { queue, deadLetter } = await createQueueWithDeadLetter(emulator.sqs, uniqueName('tasks'), {
    visibilityTimeoutSeconds: VISIBILITY,
    maxReceiveCount: MAX_RECEIVES,
  });
  const fifo = await createQueue(emulator.sqs, uniqueName('updates'), { fifo: true, visibilityTimeoutSeconds: VISIBILITY });
  const sqs = (url: string) => new SqsQueue({ client: emulator.sqs, queueUrl: url });
  return {
    queue: sqs(queue.url),
    deadLetter: sqs(deadLetter.url),
    fifo: sqs(fifo.url),
    visibilityTimeoutSeconds: VISIBILITY,
    maxReceiveCount: MAX_RECEIVES,
    advance: (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000 + 150)),
    cleanup: async () => {
      for (const q of [queue, deadLetter, fifo]) emulator.server.deleteQueue(q.name);
    },
  };
});

describe('MemoryQueue specifics', () => {
  it('forgets a deduplicationId after 5 minutes', async () => {
    const clock = fakeClock();
    const q = new MemoryQueue({ fifo: true, now: clock.now });
    await q.send('one', { groupId: 'g', deduplicationId: 'd' });
    await clock.advance(DEDUPLICATION_WINDOW_MS / 1000 - 1);
    await q.send('dropped', { groupId: 'g', deduplicationId: 'd' });
    expect(await q.depth()).toBe(1);
    await clock.advance(2);
    await q.send('accepted', { groupId: 'g', deduplicationId: 'd' });
    expect(await q.depth()).toBe(2);
  });

  it('needs a groupId on FIFO queues and ignores groups on standard ones', async () => {
    await expect(new MemoryQueue({ fifo: true }).send('x')).rejects.toBeInstanceOf(PortError);
    const standard = new MemoryQueue();
    await standard.send('a', { groupId: 'g', deduplicationId: 'd' });
    await standard.send('b', { groupId: 'g', deduplicationId: 'd' });
    expect((await standard.receive(10)).map((m) => m.body)).toEqual(['a', 'b']);
  });

  it('returns several messages of one FIFO group in order in one receive', async () => {
    const q = new MemoryQueue({ fifo: true });
    for (const b of ['1', '2', '3']) await q.send(b, { groupId: 'g' });
    expect((await q.receive(10)).map((m) => m.body)).toEqual(['1', '2', '3']);
  });

  it('checks bodies as SQS does: size, characters (emoji allowed)', async () => {
    const q = new MemoryQueue({ maxMessageBytes: 1024 });
    await expect(q.send('x'.repeat(1025))).rejects.toThrow(/exceeds the limit of 1024/);
    await expect(q.send('bell \u0007')).rejects.toThrow(/U\+0007/);
    await expect(q.send('lone \uD800 surrogate')).rejects.toThrow(/U\+D800/);
    await q.send('dice 🎲');
    expect((await q.receive(1))[0].body).toBe('dice 🎲');
  });

  it('sendBatch sends all entries or none', async () => {
    const q = new MemoryQueue();
    await expect(q.sendBatch([{ body: 'ok' }, { body: '' }])).rejects.toBeInstanceOf(PortError);
    expect(await q.depth()).toBe(0);
  });

  it('rejects inconsistent options', () => {
    const std = new MemoryQueue();
    const fifo = new MemoryQueue({ fifo: true });
    expect(() => new MemoryQueue({ maxReceiveCount: 3 })).toThrow(/needs a deadLetter/);
    expect(() => new MemoryQueue({ deadLetter: std })).toThrow(/needs maxReceiveCount/);
    expect(() => new MemoryQueue({ deadLetter: fifo, maxReceiveCount: 3 })).toThrow(/must be standard/);
    expect(() => new MemoryQueue({ fifo: true, deadLetter: std, maxReceiveCount: 3 })).toThrow(/must be FIFO/);
    expect(() => new MemoryQueue({ visibilityTimeoutSeconds: -1 })).toThrow(RangeError);
  });

  it('a long poll notices a visibility timeout running out', async () => {
    const q = new MemoryQueue({ visibilityTimeoutSeconds: 0.3 });
    await q.send('back soon');
    await q.receive(1);
    const t0 = Date.now();
    const [m] = await q.receive(1, 5);
    expect(m.receiveCount).toBe(2);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('withLargePayloads', () => {
  it('stores a large body under prefix/sha256.json and sends a pointer', async () => {
    const inner = new MemoryQueue();
    const store = new MemoryObjectStore();
    const q = withLargePayloads(inner, store, { prefix: 'runs/r1/payloads/', maxInlineBytes: 100 });
    const big = JSON.stringify({ s: 'y'.repeat(500) });
    await q.send(big);
    await q.send('small');
    const raw = await inner.receive(10);
    const key = pointerKey(raw[0].body);
    expect(key).toMatch(/^runs\/r1\/payloads\/[0-9a-f]{64}\.json$/);
    expect(raw[0].body).toBe(JSON.stringify({ $pointer: key }));
    expect(raw[1].body).toBe('small');
    expect(new TextDecoder().decode((await store.get(key!)).body)).toBe(big);
    await Promise.all(raw.map((m) => inner.release(m)));
    expect((await q.receive(10)).map((m) => m.body)).toEqual([big, 'small']);
    expect(q.name).toBe(inner.name);
  });

  it('offloads a small body that looks like a pointer, so it round-trips', async () => {
    const store = new MemoryObjectStore();
    const q = withLargePayloads(new MemoryQueue(), store);
    const tricky = '{"$pointer":"not/really"}';
    await q.send(tricky);
    expect((await q.receive(1))[0].body).toBe(tricky);
    expect(await store.list('queue-payloads/')).toHaveLength(1);
  });

  it('a missing payload fails receive with LargePayloadError and releases the other messages', async () => {
    const inner = new MemoryQueue({ visibilityTimeoutSeconds: 60 });
    const store = new MemoryObjectStore();
    const q = withLargePayloads(inner, store, { maxInlineBytes: 64 });
    await q.send('z'.repeat(100));
    await q.send('fine');
    const [{ key }] = await store.list('');
    await store.delete(key);
    const err = await q.receive(10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LargePayloadError);
    expect((err as LargePayloadError).key).toBe(key);
    expect((await q.receive(10)).map((m) => m.body)).toEqual(['fine']); // released at once; the lost one stays in flight
  });

  it('offloadPayload / resolvePayload work on their own (for Lambda records)', async () => {
    const store = new MemoryObjectStore();
    const body = 'w'.repeat(300_000);
    const sent = await offloadPayload(body, store);
    expect(sent.length).toBeLessThan(200);
    expect(await resolvePayload(sent, store)).toBe(body);
    expect(await offloadPayload('short', store)).toBe('short');
    await expect(resolvePayload('{"$pointer":"gone.json"}', store)).rejects.toBeInstanceOf(LargePayloadError);
  });
});

describe('SqsQueue against the emulator', () => {
  it('sends bodies over maxInlineBytes through S3 and resolves them on receive', async () => {
    const bucket = await createBucket(emulator.s3, uniqueName('payloads'));
    const store = new S3ObjectStore({ client: emulator.s3, bucket });
    const { url } = await createQueue(emulator.sqs, uniqueName('big'));
    const q = new SqsQueue({ client: emulator.sqs, queueUrl: url, store, payloadPrefix: 'runs/x/payloads' });
    const big = JSON.stringify({ rows: 'r'.repeat(300 * 1024) }); // over the 256 KiB default
    await q.sendBatch([{ body: big }, { body: 'inline' }]);
    const raw = await emulator.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, VisibilityTimeout: 0 }));
    const rawBodies = (raw.Messages ?? []).map((m) => m.Body ?? '');
    expect(rawBodies).toContain('inline');
    const pointer = rawBodies.find((b) => b !== 'inline')!;
    expect(pointerKey(pointer)).toMatch(/^runs\/x\/payloads\/[0-9a-f]{64}\.json$/);
    const got = await receiveAll(q, 2);
    expect(got.map((m) => m.body).sort()).toEqual([big, 'inline'].sort());
  });

  it('splits sendBatch by entry count and by bytes', async () => {
    const { url } = await createQueue(emulator.sqs, uniqueName('chunks'));
    const q = new SqsQueue({ client: emulator.sqs, queueUrl: url, maxBatchBytes: 2048 });
    const entries = Array.from({ length: 25 }, (_, i) => ({ body: `${i}`.padEnd(500, '.') }));
    await q.sendBatch(entries); // 4 per request by bytes
    expect(await q.depth()).toBe(25);
  });

  it('reports failed batch entries with a PortError', async () => {
    const { url } = await createQueue(emulator.sqs, uniqueName('fails'), { fifo: true });
    const q = new SqsQueue({ client: emulator.sqs, queueUrl: url });
    const err = await q.sendBatch([{ body: 'no group id' }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortError);
    expect(String((err as Error).message)).toMatch(/MissingParameter|MessageGroupId|failed/);
  });

  it('names the queue after the last segment of its URL', async () => {
    const { url, name } = await createQueue(emulator.sqs, uniqueName('named'));
    expect(new SqsQueue({ client: emulator.sqs, queueUrl: url }).name).toBe(name);
    expect(new SqsQueue({ client: emulator.sqs, queueUrl: url, name: 'tasks' }).name).toBe('tasks');
    expect(() => new SqsQueue({ client: emulator.sqs, queueUrl: url, maxInlineBytes: 10 })).toThrow(/need a store/);
  });

  it('emulator gap: rejects characters above U+FFFF that SQS accepts', async () => {
    const { url } = await createQueue(emulator.sqs, uniqueName('emoji'));
    const q = new SqsQueue({ client: emulator.sqs, queueUrl: url });
    await expect(q.send('dice 🎲')).rejects.toThrow(/InvalidMessageContents/);
  });

  it('emulator gap: a FIFO receive returns one message per group', async () => {
    const { url } = await createQueue(emulator.sqs, uniqueName('onepergroup'), { fifo: true });
    const q = new SqsQueue({ client: emulator.sqs, queueUrl: url });
    for (const b of ['1', '2', '3']) await q.send(b, { groupId: 'g' });
    expect((await q.receive(10)).map((m) => m.body)).toEqual(['1']); // real SQS may return 1, 2, 3
  });
});

async function receiveAll(q: SqsQueue, count: number) {
  const out = [];
  for (let i = 0; i < 5 && out.length < count; i++) out.push(...(await q.receive(10, 1)));
  return out;
}
