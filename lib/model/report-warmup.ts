/**
 * Warming the report up: one whole report of a small made-up fit, rendered and thrown away.
 *
 * A process's first render compiles what it runs: vega-lite's compiler, vega's parser, dataflow
 * and string renderer, the scoring of the sample's rows (JIT tiers, inline caches). Rendering a few
 * throwaway charts left much of that cold: the first real report then took about 1.7 times a warm
 * one (0.7 s against 0.4 s on the development machine). This renders every section the real
 * report has (sizes, forest plot, pairs, regressions, fit, ELBO, criteria) on MAX_PLOTTED_ROWS rows
 * of three clusters, so a caller with time to spare (the aggregator on a run's planning message,
 * lib/pipeline/aggregator.ts) makes the render at the end warm. The local runner does not: on two
 * cores that CPU would be taken from the initialization (lib/local/runner.ts).
 */
import { parseConfig } from '../config.js';
import type { ColumnPlan, Standardization } from '../data/dataset.js';
import { hardAssignmentStats } from '../inference/init.js';
import { batchUpdate } from '../inference/vb.js';
import { createRandom } from '../math/random.js';
import { MAX_PLOTTED_ROWS } from '../rows.js';
import { initialAlpha } from './posterior.js';
import { renderReport } from './report.js';
import { priorCoordinates, specOfPlan } from './spec.js';
import { summarize } from './summary.js';

const COLUMNS = ['a', 'b', 'c'];
const CLUSTERS = 3;

/** Renders the throwaway report; returns it (its HTML) for the tests that check it has every section. */
export function warmReport(): string {
  const config = parseConfig({ target: 'y', components: 4 }, 'the report warm-up');
  const D = COLUMNS.length;
  const plan: ColumnPlan = {
    target: 'y',
    x: COLUMNS,
    r: COLUMNS,
    select: [...COLUMNS, 'y'].map((column) => ({ column, kind: 'number' as const })),
    xSlot: COLUMNS.map((_, j) => j),
    rSlot: COLUMNS.map((_, j) => j),
    ySlot: D,
  };
  // The made-up rows are in standardized units already.
  const zeros = COLUMNS.map(() => 0);
  const ones = COLUMNS.map(() => 1);
  const standardization: Standardization = { xMean: zeros, xSd: ones, rMean: zeros, rSd: ones, yMean: 0, ySd: 1 };
  const spec = specOfPlan(config, plan);
  // Three clusters 4 apart, each with its own regression of y on x (standardized units).
  const random = createRandom(1, 0);
  const n = MAX_PLOTTED_ROWS;
  const batch = { n, x: new Float64Array(n * D), u: new Float64Array(n * (D + 1)), y: new Float64Array(n) };
  const labels = new Int32Array(n);
  const rows: Record<string, number>[] = [];
  for (let i = 0; i < n; i++) {
    const k = (labels[i] = i % CLUSTERS);
    let y = k - 1 + 0.3 * random.normal();
    const row: Record<string, number> = {};
    COLUMNS.forEach((column, j) => {
      const x = 4 * (j === k ? 1 : 0) + random.normal();
      batch.x[i * D + j] = batch.u[i * (D + 1) + j] = row[column] = x;
      y += (k - j) * 0.5 * x;
    });
    batch.u[i * (D + 1) + D] = 1;
    batch.y[i] = row.y = y;
    rows.push(row);
  }
  const prior = { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) };
  const state = batchUpdate(spec, prior, hardAssignmentStats(spec, batch, labels));
  const doc = summarize({ dataset: 'warm-up', runId: 'warm-up', config, plan, standardization, state, rows: n, skippedRows: 0, elboStandardized: -3 * n, converged: true });
  const trace = [1, 2, 3].map((round) => ({ phase: 'batch', round, elbo: -3 * n - 10 ** (2 - round) }));
  return renderReport(doc, trace, [], { sample: rows, files: [{ name: 'warm-up.csv', bytes: 0 }] });
}
