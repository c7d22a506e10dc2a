import { mkdirSync, writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { parseConfig } from '/work/main/lib/config.js';
import { fitLocal } from '/work/main/lib/local/runner.js';
const [header, ...rows] = readFileSync('/work/main/examples/forum.csv', 'utf8').trim().split('\n');
const dir = mkdtempSync(path.join(tmpdir(), 'exp-'));
const files = Array.from({ length: 25 }, (_, i) => {
  const f = path.join(dir, `part-${String(i).padStart(2, '0')}.csv`);
  writeFileSync(f, [header, ...rows.slice(i * 40, (i + 1) * 40)].join('\n') + '\n');
  return f;
});
for (const [svi, tol, workers] of [[1, 1e-9, 0], [0, 1e-9, 0]] as const) {
  const t0 = Date.now();
  const r = await fitLocal({ files, workers, outDir: path.join(dir, `o${svi}${tol}${workers}`), config: parseConfig({ target: 'y', seed: 7, schedule: { shardRows: 40, sviEpochs: svi, tolerance: tol, maxSweeps: 200 } }) });
  const p: any = r.posterior;
  const sweeps = p.trace.filter((t: any) => t.phase === 'batch').length;
  console.log(svi, tol, workers, Date.now() - t0, 'ms', sweeps, 'sweeps', p.converged, p.elbo.toFixed(4), JSON.stringify(p.components.filter((c: any) => c.weight > 0.001).map((c: any) => [c.weight.toFixed(5), c.mean.map((m: number) => m.toFixed(5)), c.coefficients.map((m: number) => m.toFixed(5)), c.intercept.toFixed(5)])));
}
