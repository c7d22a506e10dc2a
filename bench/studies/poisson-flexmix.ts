/**
 * Poisson mixture of regressions against flexmix (issue 9): flexmix's own NPreg data (data(NPreg),
 * 200 rows), `yp ~ x`, 2 components, conditional-only. flexmix: best of 5 EM starts of
 * FLXMRglm(family = "poisson") (maximum likelihood); ours: the local `fit` with family poisson,
 * conditional-only, 2 dirichlet components. Prints both sets of coefficients and the largest
 * relative difference. Needs R with flexmix (Debian: r-cran-flexmix); not run in CI.
 *
 *   npx tsx bench/studies/poisson-flexmix.ts
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../lib/config.js';
import { fitLocal } from '../../lib/local/runner.js';

const dir = mkdtempSync(path.join(tmpdir(), 'study-poisson-flexmix-'));
const file = path.join(dir, 'npreg.csv');
const r = spawnSync(
  'Rscript',
  [
    '-e',
    `suppressMessages(library(flexmix)); data("NPreg"); d <- data.frame(x = NPreg$x, yp = NPreg$yp); write.csv(d, "${file}", row.names = FALSE);
     set.seed(1); m <- stepFlexmix(yp ~ x, data = d, k = 2, nrep = 5, verbose = FALSE, model = FLXMRglm(family = "poisson"));
     p <- parameters(m); for (j in seq_len(ncol(p))) cat(p["coef.x", j], p["coef.(Intercept)", j], "\\n")`,
  ],
  { encoding: 'utf8' },
);
if (r.status !== 0) {
  console.log(`R/flexmix unavailable or failed: ${r.stderr.slice(0, 300)}`);
  process.exit(0);
}
const flexmix = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)); // [slope, intercept] per component

const config = parseConfig({ target: 'yp', family: 'poisson', covariateModel: false, regressionColumns: ['x'], components: 2, weights: 'dirichlet' });
const result = await fitLocal({ files: [file], config, outDir: path.join(dir, 'out'), workers: 0 });
const ours = result.posterior.components.map((c) => [c.coefficients[0], c.intercept]);
rmSync(dir, { recursive: true, force: true });

// Match components by slope, then compare every coefficient relative to flexmix's.
const order = [...ours].sort((a, b) => a[0] - b[0]);
const theirs = [...flexmix].sort((a, b) => a[0] - b[0]);
let worst = 0;
theirs.forEach((f, k) => {
  const o = order[k];
  const rel = f.map((v, i) => Math.abs(o[i] - v) / Math.abs(v));
  worst = Math.max(worst, ...rel);
  console.log(
    `component ${k}: flexmix slope ${f[0].toFixed(4)} intercept ${f[1].toFixed(4)} | clusterwise slope ${o[0].toFixed(4)} intercept ${o[1].toFixed(4)}` +
      ` | relative differences ${rel.map((v) => (100 * v).toFixed(2) + '%').join(', ')}`,
  );
});
console.log(`components: flexmix ${flexmix.length}, clusterwise ${ours.length}; largest relative difference ${(100 * worst).toFixed(2)}% (target ≤ 5%)`);
