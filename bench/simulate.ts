/**
 * `npm run simulate -- --rows N --workers W[,W2…] [--json] [--timeline] [--set section.name=value …] [--config JSON]`:
 * one refit of a generated data set by the real pipeline roles on modelled AWS (bench/sim/run.ts
 * says exactly what is real and what is modelled). Prints every parameter and what it predicts;
 * `--timeline`, also when each phase of the run began and ended (the JSON always has it).
 * Several worker counts run one after another in this process, charged the same measured CPU
 * rates, and the speedup of each over the first is printed; `--json` prints one object per line.
 */
import { Command } from 'commander';
import { paramsWith } from './sim/params.js';
import { simulate } from './sim/run.js';

const program = new Command('simulate')
  .requiredOption('--rows <n>', 'rows of the generated data set', Number)
  .requiredOption('--workers <n[,n…]>', 'worker Lambda concurrency (several: compared in one run)', (v: string) => v.split(',').map(Number))
  .option('--json', 'print one JSON object')
  .option('--timeline', 'also print when each phase began and ended: planning, cold starts, prefetch, each round\'s tasks and its aggregator invocation')
  .option('--set <section.name=value>', 'override a model parameter (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
  .option('--config <json>', 'model.json settings over the defaults, e.g. \'{"schedule":{"sviEpochs":0}}\'', (v: string) => JSON.parse(v) as Record<string, unknown>)
  .parse();
const o = program.opts<{ rows: number; workers: number[]; json?: boolean; timeline?: boolean; set: string[]; config?: Record<string, unknown> }>();
const params = paramsWith(o.set);
if (!o.workers.every((w) => Number.isInteger(w) && w > 0)) program.error(`--workers: whole numbers above 0, comma-separated (got ${o.workers.join(',')})`);
if (!o.json) console.log(`parameters: ${JSON.stringify(params)}`);
let baseline: number | undefined;
for (const workers of o.workers) {
  const result = await simulate({ rows: o.rows, workers, params, config: o.config, runId: `run-${workers}w` });
  baseline ??= result.wallSeconds;
  print(result, baseline / result.wallSeconds);
}

function print(result: Awaited<ReturnType<typeof simulate>>, speedup: number) {
  if (o.json) {
    console.log(JSON.stringify({ ...result, ...(o.workers.length > 1 ? { speedup } : {}), params }));
    return;
  }
  const f = (v: number, d = 1) => v.toLocaleString('en', { maximumFractionDigits: d });
  const mb = (b: number) => `${f(b / 1e6, 0)} MB`;
  console.log(`${f(result.rows, 0)} rows on ${result.workers} workers${result.modelled ? ` (past ${f(params.data.realRows, 0)} rows: sampled shards, see bench/sim/run.ts)` : ' (every row computed)'}`);
  const prefetch = result.prefetchSeconds === null ? '' : `, prefetch ${f(result.prefetchSeconds)} s`;
  console.log(`  wall            ${f(result.wallSeconds)} s (planning ${f(result.plannerSeconds)} s, of which CPU ${f(result.plannerCpu.sample)} s sampling and ${f(result.plannerCpu.initialize)} s initializing${prefetch}; rounds ended at ${result.roundEnds.map((t) => f(t)).join(', ')} s)`);
  console.log(`  cost            $${result.costUsd.toFixed(4)} (Lambda $${result.cost.lambda.toFixed(4)}, S3 $${result.cost.s3.toFixed(4)}, SQS $${result.cost.sqs.toFixed(4)}); ${f(result.lambdaGbSeconds, 0)} GB-s`);
  console.log(`  shards          ${result.shards} of ~${f(result.shardRows, 0)} rows; ${result.tasks} tasks; ${result.rounds.svi} SVI steps + ${result.rounds.batch} sweeps; converged ${result.converged}`);
  console.log(`  requests        S3 GET ${f(result.requests.s3Get, 0)}, PUT ${f(result.requests.s3Put, 0)}, LIST ${f(result.requests.s3List, 0)}; SQS ${f(result.requests.sqs, 0)}`);
  console.log(`  bytes           read ${mb(result.bytes.read)}, written ${mb(result.bytes.written)}`);
  console.log(`  aggregator      ${result.aggregator.invocations} invocations, busy ${f(result.aggregator.busySeconds, 2)} s (${f(100 * result.aggregator.utilization)}% of wall; the report: warmed up on the planning message in ${f(result.aggregator.reportWarmupSeconds, 2)} s, its figures rendered ahead during rounds in ${f(result.aggregator.reportAheadSeconds, 2)} s, the rest at the end ${f(result.aggregator.reportSeconds, 2)} s), ${f(result.aggregatorResultsPerSecond, 0)} task results/s; state.json ${f(result.stateBytes, 0)} B`);
  console.log(`  workers         ${result.workerColdStarts} cold starts; worker seconds: ${Object.entries(result.workerSeconds).map(([k, v]) => `${k} ${f(v)}`).join(', ')}`);
  console.log(`  fit             ELBO ${result.elbo === null ? 'n/a (sampled shards)' : f(result.elbo, 2)}, ARI ${result.ari === null ? 'n/a' : result.ari.toFixed(4)}`);
  if (o.workers.length > 1) console.log(`  speedup         ${f(speedup, 2)}× the first (${o.workers[0]} workers), at the same measured CPU rates`);
  if (o.timeline) printTimeline(result.timeline);
}

/** The phases, each as start–end on the virtual clock, with its invocations' median duration and CPU. */
function printTimeline(t: Awaited<ReturnType<typeof simulate>>['timeline']) {
  const s = (v: number) => v.toFixed(2);
  const span = (x: NonNullable<typeof t.prefetch>) => {
    const cpu = Object.values(x.cpu).reduce((a, b) => a + b, 0);
    const kinds = Object.entries(x.cpu).map(([kind, v]) => `${kind} ${s(v)}`).join(', ');
    return `${s(x.start)}–${s(x.end)} s, ${x.invocations} invocations of median ${s(x.medianSeconds)} s (mean CPU ${s(cpu)} s${kinds ? `: ${kinds}` : ''}; the rest requests)`;
  };
  const p = t.planner;
  const at = (v: number | null) => (v === null ? 'n/a' : `${s(v)} s`);
  console.log(`  timeline        planner: cold start to ${s(p.coldStartEnd)} s, workers woken and sampling from ${at(p.sampling)}, initializing from ${at(p.initializing)}, first tasks sent by ${s(p.end)} s`);
  if (t.workersWarm) console.log(`                  workers: cold starts ended ${s(t.workersWarm.first)}–${s(t.workersWarm.last)} s`);
  if (t.prefetch) console.log(`                  prefetch: ${span(t.prefetch)}`);
  t.rounds.forEach((r, i) => {
    const aggregator = r.aggregator ? `; aggregator ${s(r.aggregator.start)}–${s(r.aggregator.end)} s` : '';
    console.log(`                  round ${i + 1} (${r.id}): tasks ${span(r.tasks)}${aggregator}`);
  });
}
