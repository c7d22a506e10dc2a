/**
 * Memory of the pipeline's Lambda functions, in MiB: the one place these sizes are set, read by
 * the construct (clusterwise.ts) and by the simulator's defaults (bench/sim/params.ts). Lambda
 * gives a function CPU in proportion to its memory, one full vCPU at FULL_VCPU_MIB, and every
 * role's code runs on one thread, so that is where a role stops getting faster.
 */

/** Lambda gives one full vCPU at this memory, and a share in proportion below it. */
export const FULL_VCPU_MIB = 1769;

/**
 * Planner-sized work: list the CSV objects, sample rows, the initialization's restarts, first
 * tasks. Two vCPUs: the initialization runs on one thread, and a planner is always a cold
 * container (invoked once per refit), so V8's optimizing compiler and garbage collector work
 * beside it on threads of their own: measured on the simulator's planner, about 1.4 s of the main
 * thread's CPU and 2.1 s of the process's. With a second vCPU those run alongside instead of taking
 * turns with it (docs/deploy.md §6). It runs a few seconds once per refit, so the cost is a
 * hundredth of a cent.
 */
export const PLANNER_MEMORY_MIB = 2 * FULL_VCPU_MIB;

/**
 * Two vCPUs. The aggregator's decisions between rounds (the next posterior, the ELBO, the merge
 * and delete proposals) are on every round's critical path while all workers wait, and its last
 * invocation renders the report, with V8's compiler and garbage collector busy beside the main
 * thread. Measured on the simulator (docs/deploy.md §6), before the aggregator warmed the report
 * up on the run's planning message: 1.5 s of the run's end on one vCPU, 0.8 s on two. It runs a few
 * seconds per refit, so its CPU share matters far more than its GB-seconds ($0.0002 a refit more).
 */
export const AGGREGATOR_MEMORY_MIB = 2 * FULL_VCPU_MIB;

/** Workers, unless `workerMemoryMiB` says otherwise: room for the shard cache (WorkerCache) and one vCPU. */
export const DEFAULT_WORKER_MEMORY_MIB = 2048;
