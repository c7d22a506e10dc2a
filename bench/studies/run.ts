/**
 * The studies of issue 8: data with a known truth, fitted by the real local `fit` (fitLocal),
 * success counted per draw; flexmix (R) and scikit-learn figures on the same files when installed.
 *
 *   npx tsx bench/studies/run.ts [study ...] [--draws n] [--first d]      (or: npm run studies -- …)
 *
 * Studies: flexmixNpreg (flexmix's own 200-row NPreg, against flexmix's estimates), npreg200, npreg1000 (K=2 conditional-only dirichlet, then default stick-breaking on the
 * same draws), separated (K=3, N=1000, D=2, defaults), small2 / small5 / small10 (K clusters, one
 * of 2%, N=5000, D=3), irrelevant (2 regressions, 2 covariates with a weak cluster signal + 18
 * correlated covariates from one shared Gaussian, N=2000; bench/studies/irrelevant.ts).
 * Defaults: the issue's draw counts (30, 30, 60, 10, 10, 10, 10), draws 0, 1, …; `--first d` starts at
 * draw d instead (other draws of the same kinds, to check the figures are not the seeds'). Run with `nice -n 10`;
 * STUDIES_PEERS=0 skips flexmix and scikit-learn.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig, type ModelConfigInput } from '../../lib/config.js';
import { fitLocal } from '../../lib/local/runner.js';
import { createRandom, type Random } from '../../lib/math/random.js';
import type { ComponentSummary } from '../../lib/model/summary.js';
import type { CovariateRelevance } from '../../lib/inference/relevance.js';
import { adjustedRandIndex, leastSquares } from '../metrics.js';
import { irrelevantDraw } from './irrelevant.js';

interface Draw {
  header: string[];
  rows: number[][];
  labels: number[];
  /** Per true cluster: [coefficients…, intercept] of the regression columns. */
  coefficients: number[][];
}

const csv = (d: Draw) => [d.header.join(','), ...d.rows.map((r) => r.map((v) => Number(v.toPrecision(8))).join(','))].join('\n') + '\n';

/** NPreg kind: x ~ U(0,10); y = 5x + e or 15 + 10x − x² + e, e ~ N(0, 3²), half each. */
function npreg(n: number, random: Random): Draw {
  const d: Draw = { header: ['x', 'x2', 'y'], rows: [], labels: [], coefficients: [[5, 0, 0], [10, -1, 15]] };
  for (let i = 0; i < n; i++) {
    const k = i % 2;
    const x = 10 * random.uniform();
    const [b1, b2, b0] = d.coefficients[k];
    d.rows.push([x, x * x, b0 + b1 * x + b2 * x * x + 3 * random.normal()]);
    d.labels.push(k);
  }
  return d;
}

/**
 * A cluster-weighted model: K clusters in D covariates with centres `separation` apart on
 * average (unit covariance), each with its own regression of y on x (noise sd 1); `weights`.
 */
function cwm(n: number, D: number, weights: number[], separation: number, random: Random): Draw {
  const K = weights.length;
  // Centres on a scaled random simplex-ish layout: redraw until every pair is ≥ separation apart.
  let centres: number[][] = [];
  for (let attempt = 0; attempt < 1000; attempt++) {
    centres = Array.from({ length: K }, () => Array.from({ length: D }, () => separation * 1.5 * random.normal()));
    const ok = centres.every((a, i) => centres.every((b, j) => j <= i || Math.hypot(...a.map((v, l) => v - b[l])) >= separation));
    if (ok) break;
  }
  const coefficients = Array.from({ length: K }, () => Array.from({ length: D + 1 }, () => Math.round(4 * random.normal() * 100) / 100));
  const d: Draw = { header: [...Array.from({ length: D }, (_, i) => `x${i + 1}`), 'y'], rows: [], labels: [], coefficients };
  const cumulative = weights.map((_, k) => weights.slice(0, k + 1).reduce((s, w) => s + w, 0));
  for (let i = 0; i < n; i++) {
    const u = (i + 0.5) / n; // exact shares
    const k = cumulative.findIndex((c) => u < c + 1e-12);
    const x = centres[k].map((c) => c + random.normal());
    let y = coefficients[k][D] + random.normal();
    x.forEach((v, l) => (y += coefficients[k][l] * v));
    d.rows.push([...x, y]);
    d.labels.push(k);
  }
  return d;
}

interface FitOutcome {
  components: ComponentSummary[];
  converged: boolean;
  assigned: number[];
  elbo: number;
  relevance?: CovariateRelevance[];
}

async function fit(file: string, dir: string, input: Partial<ModelConfigInput>): Promise<FitOutcome> {
  const config = parseConfig({ target: 'y', assignments: true, ...input });
  const result = await fitLocal({ files: [file], config, outDir: dir, workers: 0 });
  const assigned = readFileSync(result.assignmentsPath!, 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[1]));
  const { components, converged, elbo, covariateRelevance: relevance } = result.posterior;
  return { components, converged, assigned, elbo, relevance };
}

/** Best matching of true clusters to components by coefficients (greedy, distinct). */
function matchCoefficients(truth: number[][], components: ComponentSummary[]): (ComponentSummary | undefined)[] {
  const used = new Set<ComponentSummary>();
  return truth.map((t) => {
    let best: ComponentSummary | undefined;
    let bestD = Infinity;
    for (const c of components) {
      if (used.has(c)) continue;
      const v = [...c.coefficients, c.intercept];
      const d = v.reduce((s, x, i) => s + (x - t[i]) ** 2, 0);
      if (d < bestD) [bestD, best] = [d, c];
    }
    if (best) used.add(best);
    return best;
  });
}

/** Share of rows assigned right under the best label permutation (majority mapping). */
function assignedRight(labels: number[], assigned: number[]): number {
  const counts = new Map<string, number>();
  labels.forEach((l, i) => counts.set(`${l},${assigned[i]}`, (counts.get(`${l},${assigned[i]}`) ?? 0) + 1));
  const byCluster = new Map<number, number>();
  for (const [key, c] of counts) {
    const cluster = Number(key.split(',')[1]);
    byCluster.set(cluster, Math.max(byCluster.get(cluster) ?? 0, c));
  }
  return [...byCluster.values()].reduce((s, v) => s + v, 0) / labels.length;
}

/** Peers run when installed, unless STUDIES_PEERS=0. */
const peers = process.env.STUDIES_PEERS !== '0';
const hasR = peers && spawnSync('Rscript', ['-e', 'library(flexmix)'], { encoding: 'utf8' }).status === 0;
const hasSklearn = peers && spawnSync('/usr/bin/python3', ['-c', 'import sklearn'], { encoding: 'utf8' }).status === 0;

/** flexmix, one random start, k = 2, y ~ x + x²: coefficients [x, x², intercept] per component. */
function flexmixNpreg(file: string): number[][] | undefined {
  if (!hasR) return undefined;
  const r = spawnSync('Rscript', ['-e', `suppressMessages(library(flexmix)); set.seed(1); d <- read.csv("${file}"); m <- flexmix(y ~ x + x2, data = d, k = 2); p <- parameters(m); for (j in seq_len(ncol(p))) cat(p["coef.x", j], p["coef.x2", j], p["coef.(Intercept)", j], "\\n")`], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
}

/** sklearn BayesianGaussianMixture on [x, y] (20 components, defaults): clusters with weight ≥ 1%. */
function sklearnCount(file: string): number | undefined {
  if (!hasSklearn) return undefined;
  const r = spawnSync('/usr/bin/python3', ['-c', `import numpy as np
from sklearn.mixture import BayesianGaussianMixture as B
d = np.loadtxt("${file}", delimiter=",", skiprows=1)
m = B(n_components=20, random_state=1, max_iter=500).fit(d)
print(int((m.weights_ >= 0.01).sum()))`], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : undefined;
}

/**
 * The reference for interval coverage: per true cluster, least squares of y on [x, 1] over its own
 * rows (the labels known), and whether each true coefficient is within 1.96 standard errors, the
 * rule the fit's intervals are held to. Its coverage is what these draws allow a calibrated 95%
 * interval: it moves by a percent or two between sets of 60 draws.
 */
function olsCoverage(d: Draw): { covered: number; total: number } {
  let covered = 0;
  let total = 0;
  d.coefficients.forEach((truth, k) => {
    const rows = d.rows.filter((_, i) => d.labels[i] === k);
    const p = truth.length;
    const { coefficients, standardErrors } = leastSquares(rows.map((r) => [...r.slice(0, p - 1), 1]), rows.map((r) => r[p - 1]));
    truth.forEach((t, a) => {
      total += 1;
      if (Math.abs(coefficients[a] - t) <= 1.96 * standardErrors[a]) covered += 1;
    });
  });
  return { covered, total };
}

const within2 = (truth: number[][], components: ComponentSummary[]) =>
  matchCoefficients(truth, components).every((c, k) => c && [...c.coefficients, c.intercept].every((v, i) => Math.abs(v - truth[k][i]) <= 2));

/**
 * flexmix's own 200-row NPreg (data(NPreg): yn on x, x²), flexmix best of 5 starts against the
 * default conditional-only dirichlet K=2 fit: both sets of estimates and their largest difference.
 */
async function flexmixOwnNpreg() {
  if (!hasR) return console.log('flexmix NPreg: R/flexmix not installed');
  const dir = mkdtempSync(path.join(tmpdir(), 'study-npreg-flexmix-'));
  const file = path.join(dir, 'npreg.csv');
  const r = spawnSync('Rscript', ['-e', `suppressMessages(library(flexmix)); data("NPreg"); d <- data.frame(x = NPreg$x, x2 = NPreg$x^2, y = NPreg$yn); write.csv(d, "${file}", row.names = FALSE); set.seed(1); m <- stepFlexmix(y ~ x + x2, data = d, k = 2, nrep = 5, verbose = FALSE); p <- parameters(m); for (j in seq_len(ncol(p))) cat(p["coef.x", j], p["coef.x2", j], p["coef.(Intercept)", j], "\\n")`], { encoding: 'utf8' });
  if (r.status !== 0) return console.log(`flexmix NPreg: R failed: ${r.stderr.slice(0, 200)}`);
  const flex = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  const out = await fit(file, dir, { covariateModel: false, regressionColumns: ['x', 'x2'], components: 2, weights: 'dirichlet' });
  const matched = matchCoefficients(flex, out.components);
  let worst = 0;
  const rows = flex.map((f, k) => {
    const c = matched[k]!;
    const ours = [...c.coefficients, c.intercept];
    ours.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - f[i]) / Math.max(Math.abs(f[i]), 1))));
    return `flexmix [${f.map((v) => v.toFixed(3)).join(', ')}] clusterwise [${ours.map((v) => v.toFixed(3)).join(', ')}]`;
  });
  rmSync(dir, { recursive: true, force: true });
  console.log(`flexmix NPreg (200 rows; [x, x², intercept]): ${rows.join('; ')}; largest difference ${(100 * worst).toFixed(1)}% of max(|flexmix|, 1)`);
}

async function study(name: string, draws: number, first: number) {
  if (name === 'flexmixNpreg') return flexmixOwnNpreg();
  const dir = mkdtempSync(path.join(tmpdir(), `study-${name}-`));
  const file = path.join(dir, 'data.csv');
  const tally: Record<string, number> = {};
  const add = (key: string, v = 1) => (tally[key] = (tally[key] ?? 0) + v);
  const started = performance.now();
  for (let draw = first; draw < first + draws; draw++) {
    const random = createRandom(8000 + draw, name.length);
    if (name.startsWith('npreg')) {
      const d = npreg(Number(name.slice(5)), random);
      writeFileSync(file, csv(d));
      const base = { covariateModel: false, regressionColumns: ['x', 'x2'] };
      const dirichlet = await fit(file, dir, { ...base, components: 2, weights: 'dirichlet' });
      if (within2(d.coefficients, dirichlet.components) || assignedRight(d.labels, dirichlet.assigned) >= 0.9) add('dirichlet right');
      if (dirichlet.converged) add('dirichlet converged');
      const sb = await fit(file, dir, base);
      if (within2(d.coefficients, sb.components) || assignedRight(d.labels, sb.assigned) >= 0.9) add('stick-breaking right');
      if (sb.components.length === 2) add('stick-breaking exactly 2');
      if (sb.converged) add('stick-breaking converged');
      const fm = flexmixNpreg(file);
      if (fm) {
        add('flexmix runs');
        const comps = fm.map((c) => ({ coefficients: c.slice(0, 2), intercept: c[2] }) as ComponentSummary);
        if (fm.length === 2 && within2(d.coefficients, comps)) add('flexmix right');
      }
    } else {
      const K = name === 'separated' ? 3 : name === 'irrelevant' ? 2 : Number(name.slice(5));
      const d =
        name === 'separated' ? cwm(1000, 2, [1 / 3, 1 / 3, 1 / 3], 6, random)
        : name === 'irrelevant' ? irrelevantDraw(2000, random)
        : cwm(5000, 3, [0.02, ...Array.from({ length: K - 1 }, () => 0.98 / (K - 1))], 6, random);
      writeFileSync(file, csv(d));
      const out = await fit(file, dir, {});
      if (out.components.length === K) add(`exactly ${K}`);
      if (out.converged) add('converged');
      add('ARI (sum)', adjustedRandIndex(d.labels, out.assigned));
      if ('bayes' in d && Array.isArray(d.bayes)) {
        add('Bayes-rule ARI (sum)', adjustedRandIndex(d.labels, d.bayes as number[]));
        const relevance = out.relevance ?? [];
        const irrelevant = new Set(relevance.filter((c) => !c.relevant).map((c) => c.column));
        if (d.header.slice(2, 20).every((c) => irrelevant.has(c))) add('x3…x20 reported irrelevant');
        if (!irrelevant.has('x1') && !irrelevant.has('x2') && relevance.length) add('x1, x2 (weak signal) reported relevant');
      }
      if (name !== 'irrelevant') {
        // 95% interval coverage of the true coefficients, over matched components.
        const matched = matchCoefficients(d.coefficients, out.components);
        matched.forEach((c, k) => {
          if (!c) return;
          const sds = [...c.coefficientSd, c.interceptSd];
          [...c.coefficients, c.intercept].forEach((v, i) => {
            add('coefficients');
            if (Math.abs(v - d.coefficients[k][i]) <= 1.96 * sds[i]) add('covered');
          });
        });
        const ols = olsCoverage(d);
        add('OLS coefficients', ols.total);
        add('OLS covered', ols.covered);
        const count = sklearnCount(file);
        if (count !== undefined) {
          add('sklearn runs');
          if (count === K) add(`sklearn exactly ${K}`);
        }
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
  const seconds = (performance.now() - started) / 1000;
  const lines = Object.entries(tally).map(([k, v]) =>
    k.endsWith('ARI (sum)') ? `${k === 'ARI (sum)' ? 'mean ARI' : 'mean Bayes-rule ARI (the ceiling)'} ${(v / draws).toFixed(3)}` : k === 'covered' ? `coverage ${(v / tally.coefficients).toFixed(3)} (least squares on the true labels: ${((tally['OLS covered'] ?? 0) / tally['OLS coefficients']).toFixed(3)})` : ['coefficients', 'OLS coefficients', 'OLS covered'].includes(k) ? '' : `${k}: ${v}/${draws}`,
  );
  console.log(`${name} (${draws} draws${first ? ` from draw ${first}` : ''}, ${seconds.toFixed(0)} s): ${lines.filter(Boolean).join('; ')}`);
}

const DEFAULT_DRAWS: Record<string, number> = {
  flexmixNpreg: 1, npreg200: 30, npreg1000: 30, separated: 60, small2: 10, small5: 10, small10: 10, irrelevant: 10,
};
const args = process.argv.slice(2);
const valueOf = (flag: string) => {
  const at = args.indexOf(flag);
  if (at < 0) return undefined;
  const value = Number(args[at + 1]);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${flag} needs a whole number ≥ 0, got ${args[at + 1]}`);
  return value;
};
const draws = valueOf('--draws');
const first = valueOf('--first') ?? 0;
const names = args.filter((a, i) => !a.startsWith('--') && !['--draws', '--first'].includes(args[i - 1]));
console.log(`peers: flexmix ${hasR ? 'installed' : 'not installed'}, scikit-learn ${hasSklearn ? 'installed' : 'not installed'}`);
for (const name of names.length ? names : Object.keys(DEFAULT_DRAWS)) {
  if (!(name in DEFAULT_DRAWS)) throw new Error(`unknown study ${name}; known: ${Object.keys(DEFAULT_DRAWS).join(', ')}`);
  await study(name, draws ?? DEFAULT_DRAWS[name], first);
}
