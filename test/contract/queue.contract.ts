/**
 * The Queue contract: one suite, run against every implementation (queue.test.ts).
 *
 * Time-dependent cases move time with `advance`: a fake clock for MemoryQueue, real sleeps for
 * SQS (so fixtures there use a 1 s visibility timeout). What the SQS emulator does differently
 * from AWS is listed in object-store.contract.ts.
 *
 * Only what every implementation, AWS SQS included, guarantees is asserted: for example that a
 * stale receipt does not make delete throw, not whether it deletes; that a FIFO group is held
 * back while a message of it is in flight, not how many of a group one receive returns.
 */
import { describe, test, type ExpectStatic } from 'vitest';
import type { Queue, QueueMessage } from '../../lib/pipeline/ports.js';

export interface QueueFixture {
  /**
   * Empty standard queue with visibility timeout `visibilityTimeoutSeconds`, redriving to
   * `deadLetter` after `maxReceiveCount` deliveries.
   */
  queue: Queue;
  /** Its (empty) dead-letter queue. */
  deadLetter: Queue;
  /** Empty FIFO queue with the same visibility timeout (content-based deduplication when no id is given). */
  fifo: Queue;
  /** At least 1. */
  visibilityTimeoutSeconds: number;
  /** At least 2. */
  maxReceiveCount: number;
  /** Lets `seconds` pass as far as the queues can tell (fake clock, or a real sleep). */
  advance(seconds: number): Promise<void>;
  cleanup(): Promise<void>;
}

/** Receives until `count` messages arrived (deleting none) or `rounds` receives came back empty. */
export async function receiveMany(queue: Queue, count: number, rounds = 3): Promise<QueueMessage[]> {
  const out: QueueMessage[] = [];
  for (let empty = 0; out.length < count && empty < rounds; ) {
    const got = await queue.receive(Math.min(10, count - out.length));
    if (got.length === 0) empty++;
    out.push(...got);
  }
  return out;
}

const bodiesOf = (messages: QueueMessage[]): string[] => messages.map((m) => m.body);

/**
 * Defines the suite. `makeQueues` is called once per test, and tests run concurrently: it must
 * return fresh queues that no other test uses (and a clock of their own, if faked).
 */
export function queueContract(name: string, makeQueues: () => Promise<QueueFixture>): void {
  // Each test makes its own queues, so tests run concurrently: the time-dependent ones against
  // SQS wait in real time, and would take ~10 s one after another.
  describe.concurrent(`Queue contract: ${name}`, () => {
    const it = (title: string, body: (fx: QueueFixture, queue: Queue, expect: ExpectStatic) => Promise<void>): void => {
      test(title, async ({ expect }) => {
        const fx = await makeQueues();
        try {
          await body(fx, fx.queue, expect);
        } finally {
          await fx.cleanup();
        }
      });
    };

    describe('delivery', () => {
      it('delivers a sent message once, with id, receipt and receiveCount 1, until deleted', async (fx, queue, expect) => {
        await queue.send('hello');
        const [m, ...rest] = await queue.receive(10);
        expect(rest).toEqual([]);
        expect(m).toMatchObject({ body: 'hello', receiveCount: 1 });
        expect(m.id).toBeTruthy();
        expect(m.receipt).toBeTruthy();
        expect(await queue.receive(10)).toEqual([]); // in flight
        expect(await queue.depth()).toBe(1);
        await queue.delete(m);
        expect(await queue.depth()).toBe(0);
      });

      it('receive on an empty queue returns [] at once', async (fx, queue, expect) => {
        const t0 = Date.now();
        expect(await queue.receive(10)).toEqual([]);
        expect(Date.now() - t0).toBeLessThan(1000);
      });

      it('receive returns at most max messages; sendBatch delivers every entry', async (fx, queue, expect) => {
        const bodies = Array.from({ length: 23 }, (_, i) => `task-${i}`);
        await queue.sendBatch(bodies.map((body) => ({ body })));
        expect(await queue.depth()).toBe(23);
        const first = await queue.receive(5);
        expect(first.length).toBeGreaterThanOrEqual(1);
        expect(first.length).toBeLessThanOrEqual(5);
        const rest = await receiveMany(queue, 23 - first.length);
        const all = [...first, ...rest];
        expect(bodiesOf(all).sort()).toEqual([...bodies].sort());
        expect(new Set(all.map((m) => m.id)).size).toBe(23);
        expect(await queue.depth()).toBe(23); // all in flight
        await Promise.all(all.map((m) => queue.delete(m)));
        expect(await queue.depth()).toBe(0);
      });

      it('receive(0) returns [] and takes nothing', async (fx, queue, expect) => {
        await queue.send('kept');
        expect(await queue.receive(0)).toEqual([]);
        expect(bodiesOf(await queue.receive(10))).toEqual(['kept']);
      });

      it('round-trips bodies exactly: JSON, markup, whitespace, non-ASCII', async (fx, queue, expect) => {
        const body =
          JSON.stringify({ html: '<a href="x?y=1&z=2">é</a>', ws: 'tab\tnl\ncr\r', cjk: '中文 ﬁ ß', quote: `'"\\` }) + '  ';
        await queue.send(body);
        const [m] = await queue.receive(1);
        expect(m.body).toBe(body);
      });

      it('round-trips a 200 KB body', async (fx, queue, expect) => {
        const body = JSON.stringify({ data: Array.from({ length: 20_000 }, (_, i) => i % 997).join(',') }).padEnd(200_000, ' ');
        expect(Buffer.byteLength(body)).toBe(200_000);
        await queue.send(body);
        const [m] = await queue.receive(1);
        expect(m.body).toBe(body);
      });

      it('rejects an empty body', async (fx, queue, expect) => {
        await expect(queue.send('')).rejects.toThrow();
      });
    });

    describe('visibility timeout and release', () => {
      it('brings an undeleted message back after the timeout, with receiveCount + 1 and a new receipt', async (fx, queue, expect) => {
        await queue.send('retry me');
        const [first] = await queue.receive(1);
        expect(await queue.receive(1)).toEqual([]);
        await fx.advance(fx.visibilityTimeoutSeconds);
        const [second] = await queue.receive(1);
        expect(second).toMatchObject({ id: first.id, body: 'retry me', receiveCount: 2 });
        expect(second.receipt).not.toBe(first.receipt);
        await queue.delete(second);
        expect(await queue.depth()).toBe(0);
      });

      it('release(message) makes it visible again at once', async (fx, queue, expect) => {
        await queue.send('give back');
        const [first] = await queue.receive(1);
        await queue.release(first);
        const [second] = await queue.receive(1);
        expect(second).toMatchObject({ id: first.id, body: 'give back', receiveCount: 2 });
      });

      it('release(message, seconds) keeps it invisible that long instead of the timeout', async (fx, queue, expect) => {
        await queue.send('later');
        const [first] = await queue.receive(1);
        await queue.release(first, fx.visibilityTimeoutSeconds + 1);
        await fx.advance(fx.visibilityTimeoutSeconds);
        expect(await queue.receive(1)).toEqual([]); // would be back by now without the release
        await fx.advance(1);
        const [second] = await queue.receive(1);
        expect(second).toMatchObject({ id: first.id, receiveCount: 2 });
      });

      it('delete with a stale receipt does not throw', async (fx, queue, expect) => {
        await queue.send('twice');
        const [first] = await queue.receive(1);
        await queue.release(first);
        const [second] = await queue.receive(1);
        await expect(queue.delete(first)).resolves.toBeUndefined();
        await queue.delete(second);
        expect(await queue.depth()).toBe(0);
      });

      it('releasing a message no longer in flight does not throw', async (fx, queue, expect) => {
        await queue.send('gone');
        const [m] = await queue.receive(1);
        await queue.delete(m);
        await expect(queue.release(m)).resolves.toBeUndefined();
        expect(await queue.depth()).toBe(0);
      });
    });

    describe('dead-letter queue', () => {
      it('moves a message to the dead-letter queue after maxReceiveCount timed-out deliveries', async (fx, queue, expect) => {
        await queue.send('poison');
        for (let i = 1; i <= fx.maxReceiveCount; i++) {
          const [m] = await queue.receive(1);
          expect(m).toMatchObject({ body: 'poison', receiveCount: i });
          await fx.advance(fx.visibilityTimeoutSeconds);
        }
        expect(await queue.receive(10)).toEqual([]);
        expect(await queue.depth()).toBe(0);
        const [dead] = await fx.deadLetter.receive(10);
        expect(dead.body).toBe('poison');
      });

      it('counts released deliveries too', async (fx, queue, expect) => {
        await queue.send('released poison');
        await queue.send('healthy');
        for (let i = 1; i <= fx.maxReceiveCount; i++) {
          const got = await receiveMany(queue, 2);
          const poison = got.find((m) => m.body === 'released poison');
          expect(poison?.receiveCount).toBe(i);
          for (const m of got) {
            if (m.body === 'healthy') await queue.delete(m);
            else await queue.release(m);
          }
        }
        expect(await queue.receive(10)).toEqual([]);
        expect(bodiesOf(await fx.deadLetter.receive(10))).toEqual(['released poison']);
      });
    });

    describe('long polling', () => {
      it('receive with waitSeconds returns as soon as a message arrives', async (fx, queue, expect) => {
        const t0 = Date.now();
        const pending = queue.receive(1, 5);
        setTimeout(() => void queue.send('arrived'), 200);
        const got = await pending;
        expect(bodiesOf(got)).toEqual(['arrived']);
        expect(Date.now() - t0).toBeLessThan(3000);
      });

      it('receive with waitSeconds returns [] when nothing arrives in time', async (fx, queue, expect) => {
        const t0 = Date.now();
        expect(await queue.receive(1, 1)).toEqual([]);
        const waited = Date.now() - t0;
        expect(waited).toBeGreaterThanOrEqual(900);
        expect(waited).toBeLessThan(3000);
      });
    });

    describe('FIFO', () => {
      it('delivers the messages of a group in send order', async (fx, queue, expect) => {
        const bodies = Array.from({ length: 6 }, (_, i) => `step-${i}`);
        await fx.fifo.sendBatch(bodies.slice(0, 4).map((body) => ({ body, options: { groupId: 'run-1', deduplicationId: body } })));
        for (const body of bodies.slice(4)) await fx.fifo.send(body, { groupId: 'run-1', deduplicationId: body });
        const seen: string[] = [];
        for (let round = 0; seen.length < bodies.length && round < 20; round++) {
          const got = await fx.fifo.receive(10);
          for (const m of got) {
            seen.push(m.body);
            await fx.fifo.delete(m);
          }
        }
        expect(seen).toEqual(bodies);
      });

      it('holds a group back while one of its messages is in flight, not other groups', async (fx, queue, expect) => {
        await fx.fifo.send('a1', { groupId: 'A', deduplicationId: 'a1' });
        await fx.fifo.send('a2', { groupId: 'A', deduplicationId: 'a2' });
        await fx.fifo.send('b1', { groupId: 'B', deduplicationId: 'b1' });
        const [a1] = await fx.fifo.receive(1);
        expect(a1.body).toBe('a1');
        const meanwhile = await receiveMany(fx.fifo, 1);
        expect(bodiesOf(meanwhile)).toEqual(['b1']);
        expect(await fx.fifo.receive(10)).toEqual([]);
        await fx.fifo.delete(a1);
        expect(bodiesOf(await fx.fifo.receive(10))).toEqual(['a2']);
      });

      it('redelivers an expired message before the rest of its group', async (fx, queue, expect) => {
        await fx.fifo.send('first', { groupId: 'G', deduplicationId: '1' });
        await fx.fifo.send('second', { groupId: 'G', deduplicationId: '2' });
        const [m] = await fx.fifo.receive(1);
        expect(m.body).toBe('first');
        await fx.advance(fx.visibilityTimeoutSeconds);
        const [again] = await fx.fifo.receive(1);
        expect(again).toMatchObject({ id: m.id, body: 'first', receiveCount: 2 });
      });

      it('drops a message whose deduplicationId was sent within 5 minutes', async (fx, queue, expect) => {
        await fx.fifo.send('original', { groupId: 'G', deduplicationId: 'task-7' });
        await fx.fifo.send('duplicate', { groupId: 'G', deduplicationId: 'task-7' });
        await fx.fifo.sendBatch([{ body: 'batched duplicate', options: { groupId: 'G', deduplicationId: 'task-7' } }]);
        expect(await fx.fifo.depth()).toBe(1);
        const [m] = await fx.fifo.receive(10);
        expect(m.body).toBe('original');
        await fx.fifo.delete(m);
        await fx.fifo.send('after delete', { groupId: 'G', deduplicationId: 'task-7' });
        expect(await fx.fifo.receive(10)).toEqual([]); // still within the window
      });

      it('without a deduplicationId, deduplicates identical bodies', async (fx, queue, expect) => {
        await fx.fifo.send('same', { groupId: 'G' });
        await fx.fifo.send('same', { groupId: 'G' });
        await fx.fifo.send('different', { groupId: 'G' });
        expect(await fx.fifo.depth()).toBe(2);
      });
    });
  });
}
