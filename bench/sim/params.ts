/**
 * Every assumption of the simulator, with its default and where the default comes from. All are
 * printed with each result and each can be overridden: `--set s3.getLatency=0.02`.
 */
import { z } from 'zod';
import { SEND_CONCURRENCY } from '../../adapters/aws/sqs-queue.js';
import { AGGREGATOR_MEMORY_MIB, DEFAULT_WORKER_MEMORY_MIB, PLANNER_MEMORY_MIB } from '../../infra/memory.js';

const seconds = z.number().min(0);
const positive = z.number().positive();

export const SimParams = z.strictObject({
  data: z
    .object({
      /** Covariates D of the generated cluster-weighted model; clusters K. */
      columns: z.number().int().min(1).max(100).default(10),
      clusters: z.number().int().min(1).max(50).default(8),
      /** Up to this many rows every worker computes on every row; past it, on an evenly spaced sample per shard. */
      realRows: z.number().int().positive().default(2_000_000),
      /** Rows per shard that stand in for all of them past realRows. */
      sampleRowsPerShard: z.number().int().positive().default(500),
      /** Rows per CSV object: a data set arrives as many objects, as in a bucket. */
      rowsPerFile: z.number().int().positive().default(10_000_000),
    })
    .strict()
    .prefault({}),
  s3: z
    .object({
      /** Time to first byte of GET and HEAD (S3 Standard in-region, small objects: 20–30 ms). */
      getLatency: seconds.default(0.025),
      /** PUT (and LIST) latency. */
      putLatency: seconds.default(0.03),
      listLatency: seconds.default(0.03),
      /** Throughput of one connection, bytes/s (S3: about 85–90 MB/s per GET stream). */
      getBandwidth: positive.default(90e6),
      putBandwidth: positive.default(60e6),
    })
    .strict()
    .prefault({}),
  sqs: z
    .object({
      /** SendMessage(Batch) and DeleteMessage round trip. */
      requestLatency: seconds.default(0.015),
      /**
       * From a message becoming visible to its Lambda invocation starting (event source mapping
       * poll), on average: each warm container's is drawn uniformly within ± half of it (seeded,
       * so a simulation repeats). With one delay for all, tasks sent together would start and end
       * together, and all see their group complete at once and claim it (worker.ts reduceGroup),
       * which pollers that each return when they do, as on Lambda and the emulator, do not.
       */
      pollDelay: seconds.default(0.05),
      /** SendMessageBatch requests a role keeps in flight on a standard queue (adapters/aws/sqs-queue.ts). */
      sendConcurrency: z.number().int().positive().default(SEND_CONCURRENCY),
    })
    .strict()
    .prefault({}),
  lambda: z
    .object({
      // The construct's sizes (infra/memory.ts).
      workerMemoryMb: z.number().int().min(128).max(10240).default(DEFAULT_WORKER_MEMORY_MIB),
      aggregatorMemoryMb: z.number().int().min(128).max(10240).default(AGGREGATOR_MEMORY_MIB),
      plannerMemoryMb: z.number().int().min(128).max(10240).default(PLANNER_MEMORY_MIB),
      /**
       * First invocation of a container, until its handler runs: the platform's start of an
       * execution environment (assumed 0.25 s; not measurable here) and the runtime's start and
       * the bundle's load, 0.42–0.5 s on this machine (bench/cold-start.ts: node's own start and the
       * import of a role's bundle, without source maps, the construct's default), ÷ cpuSpeed.
       */
      coldStart: seconds.default(0.8),
      /**
       * Loading the wasm kernel in a container (0.24 s on this machine, bench/cold-start.ts, ÷
       * cpuSpeed). It starts when the container's first delivery arrives and only what needs the
       * kernel waits for it (functions/runtime.ts containerKernel): a worker's task, the planner's
       * initialization. Its CPU is not charged to what runs meanwhile: about half of it is V8
       * compiling on background threads, and the main thread's half (0.17 s here) falls in the
       * waits on S3 of what runs meanwhile (a prefetch is about 70% requests).
       */
      kernelLoad: seconds.default(0.3),
      /**
       * Speed of one Lambda vCPU (arm64 Graviton) relative to one core of this machine for this
       * code (single-threaded wasm). Lambda gives memory/1769 vCPUs: the calling thread uses at
       * most one, V8's background threads the rest (run.ts#lambdaSeconds).
       */
      cpuSpeed: positive.default(0.8),
      /**
       * Worker event source mapping: "provisioned" (provisioned mode: enough pollers stay ready, so
       * the full concurrency is available at once) or "standard" (starts with 5 concurrent batches,
       * then +300 per minute: AWS Lambda developer guide, "Configuring scaling behavior for SQS
       * event source mappings").
       */
      scaling: z.enum(['provisioned', 'standard']).default('provisioned'),
      standardStart: z.number().int().positive().default(5),
      standardPerMinute: positive.default(300),
      /** CPU of an aggregator invocation besides its requests (decode, add, update, encode). */
      aggregatorCpu: seconds.default(0.02),
      /**
       * The planner announces the shards before it initializes (RoleContext.announceShards, on in
       * the AWS roles): workers cold-start and store the shards' binary copies meanwhile.
       */
      announceShards: z.boolean().default(true),
    })
    .strict()
    .prefault({}),
  prices: z
    .object({
      /** us-east-1 list prices, USD (assumptions: check the current price list). Lambda arm64 per GB-s. */
      lambdaGbSecond: positive.default(0.0000133334),
      lambdaRequest: positive.default(0.2e-6),
      s3Get: positive.default(0.4e-6),
      /** PUT, COPY, POST and LIST requests. */
      s3Put: positive.default(5e-6),
      sqsStandardRequest: positive.default(0.4e-6),
      sqsFifoRequest: positive.default(0.5e-6),
    })
    .strict()
    .prefault({}),
});
export type SimParams = z.infer<typeof SimParams>;

/** Apply `path=value` overrides (numbers, true/false, or strings for enums) to the defaults. */
export function paramsWith(overrides: string[]): SimParams {
  const raw: Record<string, Record<string, unknown>> = {};
  for (const o of overrides) {
    const m = /^(\w+)\.(\w+)=(.+)$/.exec(o);
    if (!m) throw new Error(`--set ${o}: expected section.name=value (e.g. s3.getLatency=0.02)`);
    const [, section, name, text] = m;
    const value = text === 'true' || text === 'false' ? text === 'true' : Number.isNaN(Number(text)) ? text : Number(text);
    raw[section] = { ...raw[section], [name]: value };
  }
  const parsed = SimParams.safeParse(raw);
  if (!parsed.success) throw new Error(`--set: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}
