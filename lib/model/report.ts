/** report.html: a self-contained page (no scripts, no network) with the components and the ELBO trace. */
import type { PosteriorDocument } from './summary.js';

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const fmt = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : Number(v.toPrecision(4)).toString());

/** An inline SVG line chart of the ELBO trace (SVI estimates grey, batch sweeps black). */
function traceChart(trace: { phase: string; elbo: number }[]): string {
  const points = trace.filter((t) => Number.isFinite(t.elbo));
  if (points.length < 2) return '';
  const w = 640, h = 200, pad = 30;
  const ys = points.map((p) => p.elbo);
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const x = (i: number) => pad + (i * (w - 2 * pad)) / (points.length - 1);
  const y = (v: number) => h - pad - ((v - lo) / (hi - lo || 1)) * (h - 2 * pad);
  const dots = points
    .map((p, i) => `<circle cx="${x(i).toFixed(1)}" cy="${y(p.elbo).toFixed(1)}" r="3" fill="${p.phase === 'batch' ? '#000' : '#999'}"/>`)
    .join('');
  const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p.elbo).toFixed(1)}`).join(' ');
  return `<svg width="${w}" height="${h}" role="img" aria-label="ELBO trace"><polyline fill="none" stroke="#888" points="${line}"/>${dots}
<text x="${pad}" y="15" font-size="11">ELBO ${lo.toFixed(2)} … ${hi.toFixed(2)} (grey: SVI estimates, black: batch sweeps)</text></svg>`;
}

export function renderReport(
  doc: PosteriorDocument,
  trace: { phase: string; elbo: number }[],
  skipped: { file: string; line: number; column: string; value: string; reason: string }[],
): string {
  const head = ['cluster', 'weight', 'size', ...(doc.covariateModel ? doc.columns.map((c) => `mean ${c}`) : []), 'intercept',
    ...doc.regressionColumns.map((c) => `coef ${c}`), ...(doc.family === 'gaussian' ? ['noise sd'] : [])];
  const rows = doc.components.map((c, i) => [String(i), fmt(c.weight), fmt(c.size), ...(c.mean ?? []).map(fmt),
    `${fmt(c.intercept)} ± ${fmt(c.interceptSd)}`, ...c.coefficients.map((v, j) => `${fmt(v)} ± ${fmt(c.coefficientSd[j])}`),
    ...(doc.family === 'gaussian' ? [fmt(c.noiseSd)] : [])]);
  const table = `<table><tr>${head.map((h) => `<th>${escape(h)}</th>`).join('')}</tr>${rows
    .map((r) => `<tr>${r.map((v) => `<td>${escape(v)}</td>`).join('')}</tr>`).join('')}</table>`;
  const skippedList = skipped.length
    ? `<h2>Skipped rows (${doc.skippedRows})</h2><ul>${skipped
        .map((s) => `<li>${escape(`${s.file}:${s.line}: column "${s.column}": ${JSON.stringify(s.value)} ${s.reason}`)}</li>`).join('')}</ul>`
    : '';
  return `<!doctype html><html><head><meta charset="utf-8"><title>clusterwise: ${escape(doc.dataset)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head>
<body><h1>${escape(doc.dataset)} — mixture of ${doc.family} regressions of ${escape(doc.target)}</h1>
<p>${doc.rows} rows used, ${doc.skippedRows} skipped; ${doc.components.length} clusters; ELBO ${doc.elbo.toFixed(2)}${doc.converged ? '' : ' (not converged)'}; run ${escape(doc.runId)}.</p>
${table}<h2>ELBO</h2>${traceChart(trace)}${skippedList}</body></html>
`;
}
