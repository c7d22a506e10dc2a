/**
 * Wide models on every channel: the statistics of D = 100 covariates and T = 20 components (a
 * partial sum of 208 020 values, 1.7 MB packed) and the messages about them cross the memory,
 * folder and S3 stores and the memory and SQS queues unchanged; and a local fit of 50 numeric
 * columns at the default 20 components completes (it once crashed on a 1 MiB queue limit).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../adapters/aws/s3-object-store.js';
import { SqsQueue } from '../adapters/aws/sqs-queue.js';
import { parseConfig } from '../lib/config.js';
import { fitLocal } from '../lib/local/runner.js';
import { createRandom } from '../lib/math/random.js';
import { layoutOf, packSymmetric, unpackSymmetric } from '../lib/model/spec.js';
import { decodeBinary, encodeBinary } from '../lib/pipeline/binary.js';
import { FolderObjectStore } from '../lib/pipeline/folder-store.js';
import { withLargePayloads } from '../lib/pipeline/large-payloads.js';
import { MemoryObjectStore } from '../lib/pipeline/memory-store.js';
import { MemoryQueue } from '../lib/pipeline/memory-queue.js';
import type { ObjectStore, Queue } from '../lib/pipeline/ports.js';
import { TaskMessage, parseMessage } from '../lib/pipeline/protocol.js';
import { markSeen, seenBits, type RunState } from '../lib/pipeline/run.js';
import { MAX_SKIPPED_EXAMPLES } from '../lib/pipeline/worker.js';
import { createBucket, createQueue, startEmulator, type Emulator } from './support/emulator.js';

const spec = { T: 20, D: 100, P: 101, family: 'gaussian' as const };

/** Equal to the bit (a byte comparison: element-wise deep equality of 400 000 values is slow). */
const sameBits = (a: Float64Array, b: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Statistics with symmetric blocks, as a local step makes them. */
function wideStats(): Float64Array {
  const random = createRandom(5);
  const layout = layoutOf(spec);
  const full = new Float64Array(layout.length).map(() => random.normal());
  for (const [offset, n] of [[layout.sxx, spec.D], [layout.suu, spec.P]] as const)
    for (let k = 0; k < spec.T; k++)
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) full[offset + k * n * n + i * n + j] = full[offset + k * n * n + j * n + i];
  return full;
}

let emulator: Emulator;
beforeAll(async () => {
  emulator = await startEmulator();
});
afterAll(async () => {
  await emulator?.stop();
});

describe('D = 100, T = 20', () => {
  it('packs symmetric blocks to triangles and back exactly', () => {
    const full = wideStats();
    const packed = packSymmetric(spec, full);
    expect(packed.length).toBe(20 * (1 + 100 + 5050 + 5151 + 101 + 1));
    expect(sameBits(unpackSymmetric(spec, packed), full)).toBe(true);
  });

  it('a partial sum crosses the memory, folder and S3 stores unchanged', async () => {
    const full = wideStats();
    const body = encodeBinary({ format: 'clusterwise/partial@1', shard: 3, rows: 50_000 }, { stats: packSymmetric(spec, full) });
    const stores: [string, ObjectStore][] = [
      ['memory', new MemoryObjectStore()],
      ['folder', new FolderObjectStore(mkdtempSync(path.join(tmpdir(), 'wide-')), { durable: false })],
      ['S3 (emulator)', new S3ObjectStore({ client: emulator.s3, bucket: await createBucket(emulator.s3, 'wide') })],
    ];
    for (const [name, store] of stores) {
      await store.put('runs/d/r/rounds/x/g00000/t000000.bin', body);
      const { header, arrays } = decodeBinary<{ rows: number }>((await store.get('runs/d/r/rounds/x/g00000/t000000.bin')).body, name);
      expect(header.rows, name).toBe(50_000);
      expect(sameBits(unpackSymmetric(spec, arrays.stats as Float64Array), full), name).toBe(true);
    }
  });

  it('a task message of a wide run crosses the memory and SQS queues, large bodies offloaded alike', async () => {
    const task = {
      kind: 'task', dataset: 'wide', runId: 'r', taskId: 'assign0-o0-v9-w-t0', index: 0, shard: 0, posteriorKey: 'runs/wide/r/posterior/v000009-w.bin',
      round: { id: 'assign0-o0-v9-w', phase: 'assign', number: 0, baseVersion: 9, tasks: 1, fanIn: 1 },
      clusterOf: Array.from({ length: spec.T }, (_, k) => k),
      // Padding as a stand-in for any body past SQS's inline limit.
    } as const;
    const store = new MemoryObjectStore();
    const queues: [string, Queue][] = [
      ['memory', withLargePayloads(new MemoryQueue({ name: 'tasks' }), store, { maxInlineBytes: 1024 })],
      ['SQS (emulator)', new SqsQueue({ client: emulator.sqs, queueUrl: (await createQueue(emulator.sqs, 'wide-tasks')).url, store, maxInlineBytes: 1024 })],
    ];
    const big = { ...task, clusterOf: Array.from({ length: 200 }, (_, k) => k) };
    for (const [name, queue] of queues) {
      for (const body of [task, big]) {
        await queue.send(JSON.stringify(body));
        const [received] = await queue.receive(1, 1);
        expect(parseMessage(TaskMessage, received.body, name), name).toEqual(body);
        await queue.delete(received);
      }
    }
  });
});

describe('a local fit of 50 numeric columns', () => {
  it('completes at the default 20 components', { timeout: 600_000 }, async () => {
    const random = createRandom(9);
    const header = [...Array.from({ length: 50 }, (_, j) => `x${j + 1}`), 'y'].join(',');
    const lines = Array.from({ length: 2000 }, (_, n) => {
      const k = n % 2;
      const x = Array.from({ length: 50 }, () => 3 * k + random.normal());
      const y = (k ? 2 : -1) * x[0] + random.normal();
      return [...x, y].map((v) => v.toFixed(4)).join(',');
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'wide-fit-'));
    writeFileSync(path.join(dir, 'wide.csv'), [header, ...lines].join('\n') + '\n');
    const result = await fitLocal({ files: [path.join(dir, 'wide.csv')], config: parseConfig({ target: 'y' }), outDir: path.join(dir, 'out'), workers: 1 });
    expect(result.posterior.rows).toBe(2000);
    expect(result.posterior.components.length).toBe(2);
  });
});

describe('the run state', () => {
  it('stays under 64 KiB at 20 000 shards, every shard seen, with the most skipped-row examples kept', () => {
    const shards = 20_000;
    const manifest = { shards: Array.from({ length: shards }, (_, index) => ({ index, file: 0, start: 0, end: 1 })) };
    const state = {
      format: 'clusterwise/state@2', status: 'running', phase: 'batch', version: 40, posteriorKey: 'runs/a-long-dataset-name/2026-12-02T00-00-00-000Z-abcdef/posterior/v000040-abcdef12.bin', step: 20,
      round: { id: 'batch17-o0-v40-abcdef12', phase: 'batch', number: 17, baseVersion: 40, tasks: shards, fanIn: 142, offset: 0 },
      seen: { shards: '', count: shards, rows: 1e9, skipped: 1e6 },
      skippedExamples: Array.from({ length: MAX_SKIPPED_EXAMPLES }, (_, i) => ({ shard: i, line: 1234, file: 'datasets/a-long-dataset-name/data/2026/12/part-00001.csv', column: 'a_rather_long_column_name', value: 'x'.repeat(100), reason: 'not a number' })),
      totalRows: 1e9, converged: false, latest: { phase: 'batch', round: 16, version: 39, elbo: -1.234e10 }, updatedAt: new Date().toISOString(),
    } as RunState;
    const bits = seenBits(manifest, state);
    for (let s = 0; s < shards; s++) markSeen(bits, s);
    state.seen.shards = bits.toString('base64');
    expect(Buffer.byteLength(JSON.stringify(state))).toBeLessThan(64 * 1024);
  });
});
