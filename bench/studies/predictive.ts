/**
 * The predictive distribution of `predict` on held-out data from a known cluster-weighted model
 * (issue 8 item 5): each draw fits one sample and scores another, and prints
 *
 *  - the share of held-out y inside `--interval 0.9` (target 0.88–0.92),
 *  - the mean log density per row of the mixture (log_density) against the Gaussian summary
 *    N(y | prediction, prediction_sd²) on the same rows, in nats,
 *  - the agreement of the cluster column with the true labels, from p(z | x) and with --cluster
 *    from p(z | x, y).
 *
 *   npx tsx bench/studies/predictive.ts [--draws n] [--first d]        (run with nice -n 10)
 *
 * `--first d` starts at draw d instead of 0 (other draws of the same kind).
 *
 * Data: x | k ~ N(1.5 (k − 1), 1), three clusters of equal weight that overlap in x, each with its
 * own line y = a_k + b_k x + N(0, sd_k²) (the lines cross, so at a given x the predictive can be
 * two- or three-peaked). test/predictive.test.ts asserts the same on one draw.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { fit } from '../../lib/api.js';
import { predictFile, type PredictFileOptions } from '../../lib/local/predict-file.js';
import { createRandom } from '../../lib/math/random.js';

const LINES = [{ a: 0, b: 2, sd: 0.5 }, { a: 4, b: -1, sd: 0.8 }, { a: -3, b: 0.5, sd: 0.4 }];

/** Writes n rows x,y of the model (centres `spacing` apart) to `file`; returns the true labels. */
export function cwmCsv(file: string, n: number, seed: number, spacing: number): number[] {
  const random = createRandom(seed);
  const labels: number[] = [];
  const rows = ['x,y'];
  for (let i = 0; i < n; i++) {
    const k = Math.floor(random.uniform() * LINES.length);
    const x = spacing * (k - 1) + random.normal();
    const { a, b, sd } = LINES[k];
    rows.push(`${x.toPrecision(8)},${(a + b * x + sd * random.normal()).toPrecision(8)}`);
    labels.push(k);
  }
  writeFileSync(file, rows.join('\n') + '\n');
  return labels;
}

/** `predict` of `csv` as rows of numbers by column name (empty cells NaN), with its result. */
export async function scoredRows(posterior: string, csv: string, options: Partial<PredictFileOptions> = {}) {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (b: Buffer) => parts.push(b));
  const result = await predictFile({ posterior: { text: readFileSync(posterior, 'utf8'), file: posterior }, csv, out, workers: 0, ...options });
  out.end();
  const [header, ...lines] = Buffer.concat(parts).toString('utf8').trim().split('\n');
  const names = header.split(',');
  const rows = lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [names[i], v === '' ? NaN : Number(v)])));
  return { names, rows, result };
}

/** Share of rows whose cluster matches the true label under the best relabelling (clusters may go unmatched). */
export function agreement(clusters: number[], labels: number[]): number {
  const ids = [...new Set(clusters)];
  const truths = [...new Set(labels)];
  let best = 0;
  const assign = (i: number, used: Set<number>, map: Map<number, number>) => {
    if (i === ids.length) {
      best = Math.max(best, clusters.filter((c, r) => map.get(c) === labels[r]).length);
      return;
    }
    for (const label of [...truths, -1]) {
      if (label >= 0 && used.has(label)) continue;
      map.set(ids[i], label);
      if (label >= 0) used.add(label);
      assign(i + 1, used, map);
      used.delete(label);
    }
  };
  assign(0, new Set(), new Map());
  return best / labels.length;
}

/** ln N(y | prediction, prediction_sd²) summed over rows: the Gaussian summary's log density. */
export function gaussianSummaryLogDensity(rows: Record<string, number>[]): number {
  return rows.reduce((s, r) => s - 0.5 * Math.log(2 * Math.PI * r.prediction_sd ** 2) - (r.y - r.prediction) ** 2 / (2 * r.prediction_sd ** 2), 0);
}

async function main() {
  const option = (name: string, fallback: number) => {
    const at = process.argv.indexOf(name);
    return at > 0 ? Number(process.argv[at + 1]) : fallback;
  };
  const draws = option('--draws', 10);
  const first = option('--first', 0);
  const dir = mkdtempSync(path.join(tmpdir(), 'clusterwise-predictive-'));
  const results: { covered: number; mixture: number; gaussian: number; byX: number; byXY: number }[] = [];
  try {
    console.log('draw  covered(0.9)  mixture  gaussian  (nats/row)  cluster p(z|x)  p(z|x,y)');
    for (let draw = first; draw < first + draws; draw++) {
      const train = path.join(dir, `train-${draw}.csv`);
      const test = path.join(dir, `test-${draw}.csv`);
      cwmCsv(train, 4000, 100 + 2 * draw, 1.5);
      const labels = cwmCsv(test, 5000, 101 + 2 * draw, 1.5);
      await fit(train, { target: 'y', outDir: path.join(dir, `fit-${draw}`), workers: 0 });
      const posterior = path.join(dir, `fit-${draw}`, 'posterior.json');
      const { rows } = await scoredRows(posterior, test, { interval: 0.9 });
      const withY = await scoredRows(posterior, test, { cluster: true });
      const r = {
        covered: rows.filter((x) => x.y >= x.prediction_lo && x.y <= x.prediction_hi).length / rows.length,
        mixture: rows.reduce((s, x) => s + x.log_density, 0) / rows.length,
        gaussian: gaussianSummaryLogDensity(rows) / rows.length,
        byX: agreement(rows.map((x) => x.cluster), labels),
        byXY: agreement(withY.rows.map((x) => x.cluster), labels),
      };
      results.push(r);
      console.log(
        `${String(draw).padStart(4)}  ${r.covered.toFixed(4).padStart(12)}  ${r.mixture.toFixed(4).padStart(7)}  ${r.gaussian.toFixed(4).padStart(8)}` +
          `  ${(r.mixture - r.gaussian).toFixed(4).padStart(10)}  ${r.byX.toFixed(4).padStart(14)}  ${r.byXY.toFixed(4).padStart(8)}`,
      );
    }
    const mean = (f: (r: (typeof results)[number]) => number) => results.reduce((s, r) => s + f(r), 0) / results.length;
    console.log(
      `mean  ${mean((r) => r.covered).toFixed(4).padStart(12)}  ${mean((r) => r.mixture).toFixed(4).padStart(7)}  ${mean((r) => r.gaussian).toFixed(4).padStart(8)}` +
        `  ${mean((r) => r.mixture - r.gaussian).toFixed(4).padStart(10)}  ${mean((r) => r.byX).toFixed(4).padStart(14)}  ${mean((r) => r.byXY).toFixed(4).padStart(8)}`,
    );
    console.log(`draws with coverage in [0.88, 0.92]: ${results.filter((r) => r.covered >= 0.88 && r.covered <= 0.92).length}/${draws}; mixture ahead of the Gaussian summary: ${results.filter((r) => r.mixture > r.gaussian).length}/${draws}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
