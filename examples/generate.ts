/**
 * Example data with a known answer. `npx tsx examples/generate.ts` rewrites the committed CSVs;
 * tests import the generators to make larger data on the fly.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRandom } from '../lib/math/random.js';

export interface Example {
  header: string[];
  rows: number[][];
  /** The true component of every row. */
  labels: number[];
}

const toCsv = (e: Example) => [e.header.join(','), ...e.rows.map((r) => r.map((v) => Number(v.toPrecision(7))).join(','))].join('\n') + '\n';

/** The forum's example: 4 clusters at (±1, ±1), x covariance 0.1·I, y = coeffᵀx, 1000 rows. */
export const FORUM = {
  means: [[1, 1], [1, -1], [-1, 1], [-1, -1]],
  coefficients: [[1, 4], [3, 2], [4, 1], [-3, -2]],
};

export function forumData(rows = 1000, seed = 2024): Example {
  const random = createRandom(seed);
  const out: Example = { header: ['x1', 'x2', 'y'], rows: [], labels: [] };
  for (let n = 0; n < rows; n++) {
    const k = n % 4;
    const x1 = FORUM.means[k][0] + Math.sqrt(0.1) * random.normal();
    const x2 = FORUM.means[k][1] + Math.sqrt(0.1) * random.normal();
    out.rows.push([x1, x2, FORUM.coefficients[k][0] * x1 + FORUM.coefficients[k][1] * x2]);
    out.labels.push(k);
  }
  return out;
}

/** flexmix's NPreg kind: x ~ U(0, 10); y = 5x + ε or 15 + 10x − x² + ε, ε ~ N(0, 3²). Columns x, x2, y. */
export const NPREG = { coefficients: [[5, 0, 0], [10, -1, 15]] as const, noiseSd: 3 }; // [x, x², intercept]

export function npregData(perComponent = 500, seed = 7): Example {
  const random = createRandom(seed);
  const out: Example = { header: ['x', 'x2', 'y'], rows: [], labels: [] };
  for (let n = 0; n < 2 * perComponent; n++) {
    const k = n % 2;
    const x = 10 * random.uniform();
    const [b1, b2, b0] = NPREG.coefficients[k];
    out.rows.push([x, x * x, b0 + b1 * x + b2 * x * x + NPREG.noiseSd * random.normal()]);
    out.labels.push(k);
  }
  return out;
}

/** Four clusters in x at (±2, ±2) (sd 0.6), each with its own logistic regression of y on x. */
export const LOGISTIC = {
  means: [[2, 2], [2, -2], [-2, 2], [-2, -2]],
  // [coef x1, coef x2, intercept], chosen so y is neither all 0 nor all 1 inside a cluster
  coefficients: [[1.5, -1, 0.5], [-2, 1, 4], [1, 2, -2], [-1, -1.5, -3]],
  sd: 0.6,
};

export function logisticData(rows = 60_000, seed = 11): Example {
  const random = createRandom(seed);
  const out: Example = { header: ['x1', 'x2', 'y'], rows: [], labels: [] };
  for (let n = 0; n < rows; n++) {
    const k = n % 4;
    const x1 = LOGISTIC.means[k][0] + LOGISTIC.sd * random.normal();
    const x2 = LOGISTIC.means[k][1] + LOGISTIC.sd * random.normal();
    const [b1, b2, b0] = LOGISTIC.coefficients[k];
    const p = 1 / (1 + Math.exp(-(b0 + b1 * x1 + b2 * x2)));
    out.rows.push([x1, x2, random.uniform() < p ? 1 : 0]);
    out.labels.push(k);
  }
  return out;
}

/** A large gaussian mixture of regressions for benchmarks: D covariates, K clusters. */
export function* largeRows(rows: number, D: number, K: number, seed = 3): Generator<string> {
  const random = createRandom(seed);
  const centers = Array.from({ length: K }, () => Array.from({ length: D }, () => 4 * random.normal()));
  const coefs = Array.from({ length: K }, () => Array.from({ length: D + 1 }, () => 2 * random.normal()));
  yield [...Array.from({ length: D }, (_, i) => `x${i + 1}`), 'y'].join(',') + '\n';
  const chunk: string[] = [];
  for (let n = 0; n < rows; n++) {
    const k = random.int(K);
    const x = centers[k].map((c) => c + random.normal());
    let y = coefs[k][D] + 0.5 * random.normal();
    for (let i = 0; i < D; i++) y += coefs[k][i] * x[i];
    chunk.push([...x, y].map((v) => v.toFixed(5)).join(','));
    if (chunk.length === 10_000) yield chunk.splice(0).join('\n') + '\n';
  }
  if (chunk.length) yield chunk.join('\n') + '\n';
}

/** Standardize each of the m columns of a row-major (n, m) matrix in place (a constant column stays put). */
export function standardizeColumns(v: Float64Array, n: number, m: number): void {
  for (let j = 0; j < m; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += v[i * m + j];
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (v[i * m + j] - mean) ** 2;
    const sd = Math.sqrt(variance / n) || 1;
    for (let i = 0; i < n; i++) v[i * m + j] = (v[i * m + j] - mean) / sd;
  }
}

export function writeExample(path: string, e: Example) {
  writeFileSync(path, toCsv(e));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = fileURLToPath(new URL('.', import.meta.url));
  writeExample(`${dir}forum.csv`, forumData());
  writeExample(`${dir}npreg.csv`, npregData());
  writeExample(`${dir}logistic-small.csv`, logisticData(4000));
  console.log('wrote forum.csv, npreg.csv, logistic-small.csv');
}
