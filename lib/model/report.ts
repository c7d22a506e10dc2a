/**
 * report.html: one self-contained page a statistician reads (no script, nothing fetched). Plots are
 * Vega-Lite specifications compiled by vega-lite and rendered to static SVG in this process by
 * vega's headless string renderer; tables are plain HTML.
 *
 * From the posterior alone: cluster sizes, standardized coefficients with 95% intervals (a forest
 * plot), the ELBO trace, settings, criteria and skipped rows. With a sample of rows (the optional
 * `ReportInputs.sample`): the data coloured by cluster over the most informative pairs of columns,
 * each cluster's regression, predicted against actual, residuals, and the membership probabilities.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { batchOfRows, MAX_PLOTTED_ROWS, responsibilities, type Row } from '../rows.js';
import { familyOf } from './families/index.js';
import { predict } from './predict.js';
import { asDocument, type Posterior } from '../schemas.js';
import { ownRegressionColumns } from './summary.js';

/** What a trace entry must hold (posterior.json `trace[]`, ELBO in data units). */
export interface ReportTraceEntry {
  phase: string;
  elbo: number;
  round?: number;
}

export interface ReportSkippedRow {
  file: string;
  line: number;
  column: string;
  value: string;
  reason: string;
}

/** Optional inputs that make the report richer than the posterior alone can. */
export interface ReportInputs {
  /**
   * Rows of the data as records (column → value), holding the clustering and regression columns and
   * the target: a sample of the fitted rows, e.g. the planner's. The report keeps at most
   * MAX_PLOTTED_ROWS of them (evenly spaced) and computes each row's cluster and prediction itself.
   */
  sample?: readonly Row[];
  /** The input files as the user named them, with their size in bytes when known. */
  files?: readonly { name: string; bytes?: number }[];
  /** Further settings to list, e.g. `{ kernel: 'tfjs-wasm', workers: 4 }`. */
  settings?: Readonly<Record<string, string | number | boolean>>;
}

export { MAX_PLOTTED_ROWS };
/** Pairs of the most informative columns drawn (from the top three: 1–2, 1–3, 2–3). */
const INFORMATIVE_COLUMNS = 3;
/** Regression columns each cluster's regression is drawn against. */
const REGRESSION_PLOTS = 2;
const Z95 = 1.959964;

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const fmt = (v: number | undefined | null) => (v === undefined || v === null || !Number.isFinite(v) ? '–' : Number(v.toPrecision(4)).toString());

type StringRenderer = {
  initialize(el: null, width: number, height: number, origin: [number, number]): StringRenderer;
  background(color: unknown): StringRenderer;
  render(scene: unknown): StringRenderer;
  svg(): string;
};
/** What vega's own headless toSVG reads after the dataflow ran (vega-view render-size.js). */
type ViewSize = { _viewWidth: number; _viewHeight: number; _origin: [number, number]; _scenegraph: { root: unknown } };

/**
 * A Vega-Lite spec as static SVG markup. vega's View.toSVG is async only because it may load data
 * and images; every spec here carries its data inline, so the dataflow runs synchronously
 * (`view.run()`) and vega's string renderer draws the scenegraph the way toSVG does, keeping
 * renderReport synchronous for its callers.
 */
function svgOf(spec: TopLevelSpec, label: string): string {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  view.run();
  const { SVGStringRenderer } = vega as unknown as { SVGStringRenderer: new () => StringRenderer };
  const size = view as unknown as ViewSize;
  const padding = view.padding() as { left: number; right: number; top: number; bottom: number };
  const svg = new SVGStringRenderer()
    .initialize(
      null,
      Math.max(0, size._viewWidth + padding.left + padding.right),
      Math.max(0, size._viewHeight + padding.top + padding.bottom),
      [padding.left + size._origin[0], padding.top + size._origin[1]],
    )
    .background(view.background())
    .render(size._scenegraph.root)
    .svg();
  view.finalize();
  return `<figure><figcaption>${escape(label)}</figcaption>${svg.replace('<svg ', `<svg role="img" aria-label="${escape(label)}" `)}</figure>`;
}

/**
 * Vega-Lite specs render to their content size with autosize "pad" and these defaults. `aria: false`:
 * no ARIA description per mark. Each chart's <svg> is role="img" with its caption as its label,
 * which makes its children presentational to assistive technology anyway, and a description per
 * point (1 000 of them in a scatter plot) was a third of the page's bytes and of its render time.
 */
const base = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  autosize: { type: 'pad' },
  config: { font: 'sans-serif', view: { stroke: '#ddd' }, axis: { labelLimit: 160 }, aria: false },
} as const;

const clusterColor = (clusters: number) => ({
  field: 'cluster',
  type: 'nominal' as const,
  title: 'cluster',
  scale: { domain: Array.from({ length: clusters }, (_, i) => String(i)), scheme: clusters <= 10 ? 'category10' : 'category20' },
});

// ---- plots from the posterior alone ----

function sizesPlot(doc: Posterior): string {
  const values = doc.components.map((c, i) => ({ cluster: String(i), size: c.size, weight: c.weight }));
  return svgOf(
    {
      ...base,
      data: { values },
      width: 420,
      height: { step: 18 },
      mark: 'bar',
      encoding: {
        y: { field: 'cluster', type: 'nominal', sort: null },
        x: { field: 'size', type: 'quantitative', title: 'expected rows N_k' },
        color: { ...clusterColor(doc.components.length), legend: null },
        tooltip: [{ field: 'weight', type: 'quantitative', format: '.3f' }],
      },
    },
    'Cluster sizes (expected number of rows)',
  );
}

/**
 * Coefficients on one scale: per standard deviation of the regression column, in standard
 * deviations of y (the family's unit: log-odds for bernoulli), with their 95% intervals.
 */
function forestPlot(doc: Posterior): string {
  const std = doc.state.standardization;
  const family = familyOf(doc.family);
  const ySd = family.target.standardized ? std.ySd : 1;
  const entry = (cluster: string, column: string, value: number, sd: number) => {
    const scale = std.rSd[doc.regressionColumns.indexOf(column)] / ySd;
    const estimate = value * scale;
    const half = Z95 * sd * scale;
    return { cluster, column, estimate, low: estimate - half, high: estimate + half };
  };
  // Shared slopes once, as their own panel "shared" (docs/model.md §15); each cluster its own columns.
  const values = [
    ...doc.components.flatMap((c, i) =>
      ownRegressionColumns(doc).map(({ column, j }) => entry(String(i), column, c.coefficients[j], c.coefficientSd[j])),
    ),
    ...(doc.shared?.columns.map((column, j) => entry('shared', column, doc.shared!.coefficients[j], doc.shared!.coefficientSd[j])) ?? []),
  ];
  if (values.length === 0) return '<p>No regression columns: each cluster\'s regression is its intercept (table below).</p>';
  const unit = family.coefficientUnit;
  return svgOf(
    {
      ...base,
      data: { values },
      facet: { column: { field: 'cluster', type: 'nominal', title: 'cluster' } },
      spec: {
        width: 160,
        height: { step: 14 },
        layer: [
          { mark: { type: 'rule', color: '#999' }, encoding: { x: { datum: 0 } } },
          {
            mark: 'rule',
            encoding: {
              y: { field: 'column', type: 'nominal', sort: null, title: null },
              x: { field: 'low', type: 'quantitative', title: `per sd of the column, in ${unit}` },
              x2: { field: 'high' },
              color: { ...clusterColor(doc.components.length), legend: null },
            },
          },
          {
            mark: { type: 'point', filled: true },
            encoding: {
              y: { field: 'column', type: 'nominal', sort: null },
              x: { field: 'estimate', type: 'quantitative' },
              color: { ...clusterColor(doc.components.length), legend: null },
            },
          },
        ],
      },
      resolve: { scale: { x: 'independent' } },
    },
    `Standardized coefficients with 95% intervals (per sd of the column, in ${unit})`,
  );
}

/**
 * The ELBO per step, and for the batch sweeps the distance to the final ELBO on a log scale, the
 * view in which convergence shows: a change of 1e-8 relative is not drawn as a full-height jump.
 */
function elboPlots(doc: Posterior, trace: readonly ReportTraceEntry[]): string {
  const points = trace.map((t, step) => ({ step: step + 1, elbo: t.elbo, phase: t.phase === 'batch' ? 'batch sweep' : 'SVI estimate' })).filter((p) => Number.isFinite(p.elbo));
  if (points.length === 0) return '<p>No ELBO trace.</p>';
  const final = doc.elbo;
  const tolerance = doc.state.config.schedule.tolerance * Math.abs(final);
  // A y range no narrower than the convergence tolerance times 1000, centred on the values.
  const lo = Math.min(...points.map((p) => p.elbo));
  const hi = Math.max(...points.map((p) => p.elbo));
  const span = Math.max(hi - lo, 1000 * tolerance, 1e-9 * Math.abs(final));
  const mid = (lo + hi) / 2;
  const trend = svgOf(
    {
      ...base,
      data: { values: points },
      width: 480,
      height: 220,
      layer: [
        { mark: { type: 'line', color: '#bbb' }, encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'elbo', type: 'quantitative' } } },
        {
          mark: { type: 'point', filled: true },
          encoding: {
            x: { field: 'step', type: 'quantitative', title: 'step (SVI steps, then batch sweeps)', axis: { tickMinStep: 1 } },
            y: { field: 'elbo', type: 'quantitative', title: 'ELBO (data units)', scale: { domain: [mid - span / 2, mid + span / 2], zero: false, nice: true } },
            color: { field: 'phase', type: 'nominal', scale: { domain: ['SVI estimate', 'batch sweep'], range: ['#999', '#1f77b4'] } },
          },
        },
      ],
    },
    'ELBO trace',
  );
  const sweeps = points
    .filter((p) => p.phase === 'batch sweep')
    .map((p, i) => ({ sweep: i + 1, gap: Math.max(final - p.elbo, tolerance / 100) }));
  if (sweeps.length < 2) return trend;
  const gap = svgOf(
    {
      ...base,
      data: { values: sweeps },
      width: 320,
      height: 220,
      layer: [
        {
          mark: { type: 'line', point: true },
          encoding: {
            x: { field: 'sweep', type: 'quantitative', title: 'batch sweep', axis: { tickMinStep: 1 } },
            y: { field: 'gap', type: 'quantitative', title: 'final ELBO − ELBO', scale: { type: 'log' } },
          },
        },
        { mark: { type: 'rule', strokeDash: [4, 3], color: '#d62728' }, encoding: { y: { datum: tolerance } } },
      ],
    },
    `Distance to the final ELBO (dashed: the tolerance ${fmt(doc.state.config.schedule.tolerance)} × |ELBO|)`,
  );
  return trend + gap;
}

// ---- plots of a sample of rows ----

interface SampleRow {
  values: Record<string, number>;
  cluster: string;
  probability: number;
  prediction: number;
  actual: number;
}

/** Evenly spaced rows, at most `max`. */
function thin<T>(rows: readonly T[], max: number): T[] {
  if (rows.length <= max) return [...rows];
  return Array.from({ length: max }, (_, i) => rows[Math.floor((i * rows.length) / max)]);
}

function scoredSample(doc: Posterior, sample: readonly Row[]): SampleRow[] {
  const rows = thin(sample, MAX_PLOTTED_ROWS);
  const { batch, used } = batchOfRows(doc, rows, { withTarget: true });
  if (batch.n === 0) return [];
  const membership = responsibilities(doc, batch);
  const predicted = predict(asDocument(doc), batch);
  // In data units from the batch (a treatment-coded input `column=level` as its 0/1).
  const { xMean, xSd, rMean, rSd } = doc.state.standardization;
  const D = doc.columns.length;
  const P = doc.regressionColumns.length + 1;
  return used.map((index, n) => ({
    values: Object.fromEntries([
      ...doc.regressionColumns.map((c, j) => [c, batch.u[n * P + j] * rSd[j] + rMean[j]]),
      ...(doc.covariateModel ? doc.columns.map((c, j) => [c, batch.x[n * D + j] * xSd[j] + xMean[j]]) : doc.columns.map((c) => [c, Number(rows[index][c])])),
    ]),
    cluster: String(membership.cluster[n]),
    probability: membership.probability[n],
    prediction: predicted.mean[n],
    actual: familyOf(doc.family).target.standardized ? batch.y[n] * doc.state.standardization.ySd + doc.state.standardization.yMean : batch.y[n],
  }));
}

/**
 * Columns that tell the clusters apart best: between-cluster variance of the cluster means over
 * the pooled within-cluster variance, on the sample's rows by their most responsible cluster.
 */
function informativeColumns(columns: readonly string[], rows: readonly { values: Record<string, number>; cluster: string }[], count: number): string[] {
  // Over the cells present: a missing one (docs/model.md §18) is NaN here.
  const score = (column: string): number => {
    const groups = new Map<string, number[]>();
    for (const r of rows) {
      if (!Number.isFinite(r.values[column])) continue;
      const values = groups.get(r.cluster);
      if (values) values.push(r.values[column]);
      else groups.set(r.cluster, [r.values[column]]);
    }
    const all = [...groups.values()].flat();
    if (all.length === 0) return 0;
    const mean = all.reduce((a, b) => a + b, 0) / all.length;
    let between = 0;
    let within = 0;
    for (const values of groups.values()) {
      const m = values.reduce((a, b) => a + b, 0) / values.length;
      between += values.length * (m - mean) ** 2;
      within += values.reduce((s, v) => s + (v - m) ** 2, 0);
    }
    return within > 0 ? between / within : between > 0 ? Infinity : 0;
  };
  return [...columns].map((c) => ({ c, s: score(c) })).sort((a, b) => b.s - a.s).slice(0, count).map((x) => x.c);
}

/**
 * The rows of one chart: the columns it draws under the fixed names x and y, and the per-row fit
 * values, not every column of the row (up to hundreds). Fixed names also keep a column's own name,
 * which may hold dots or brackets that Vega-Lite would read as a path, out of the spec.
 */
function chartRows(rows: readonly SampleRow[], x?: string, y?: string) {
  return rows.map((r) => ({
    ...(x === undefined ? {} : { x: r.values[x] }),
    ...(y === undefined ? {} : { y: r.values[y] }),
    cluster: r.cluster,
    probability: r.probability,
    prediction: r.prediction,
    actual: r.actual,
    residual: r.actual - r.prediction,
  }));
}

function pairPlots(doc: Posterior, rows: readonly SampleRow[]): string {
  const candidates = doc.columns.length ? doc.columns : doc.regressionColumns;
  const top = informativeColumns(candidates, rows, INFORMATIVE_COLUMNS);
  const pairs: [string, string][] = [];
  for (let i = 0; i < top.length; i++) for (let j = i + 1; j < top.length; j++) pairs.push([top[i], top[j]]);
  if (pairs.length === 0) return '';
  return pairs
    .map(([a, b]) =>
      svgOf(
        {
          ...base,
          data: { values: chartRows(rows, a, b) },
          width: 300,
          height: 300,
          mark: { type: 'circle', size: 14, opacity: 0.7 },
          encoding: {
            x: { field: 'x', type: 'quantitative', title: a, scale: { zero: false } },
            y: { field: 'y', type: 'quantitative', title: b, scale: { zero: false } },
            color: clusterColor(doc.components.length),
          },
        },
        `${b} against ${a}, coloured by cluster`,
      ),
    )
    .join('');
}

/**
 * y against one regression column, and each cluster's fitted regression along it with the other
 * columns held at the cluster's sample means, through the family's inverse link (a logistic curve
 * for bernoulli).
 */
function regressionPlots(doc: Posterior, rows: readonly SampleRow[]): string {
  // A class label has no curve along a column: its classes' regressions are in the table and the forest plot.
  if (familyOf(doc.family).predictive.classes) return '';
  // Numeric inputs only: a treatment-coded input has no line to draw.
  const numeric = doc.regressionColumns.filter((_, j) => (doc.state.plan.rLevel?.[j] ?? -1) < 0);
  const top = informativeColumns(numeric, rows, REGRESSION_PLOTS);
  const { inverseLink } = familyOf(doc.family);
  return top
    .map((column) => {
      const j = doc.regressionColumns.indexOf(column);
      const lines = doc.components.flatMap((c, k) => {
        const own = rows.filter((r) => r.cluster === String(k));
        if (own.length < 2) return [];
        // Means and range over the cells present: a missing one (docs/model.md §18) is NaN here.
        const present = (name: string) => own.map((r) => r.values[name]).filter(Number.isFinite);
        const at = (name: string) => {
          const v = present(name);
          return v.reduce((s, x) => s + x, 0) / Math.max(1, v.length);
        };
        const offset = c.intercept + doc.regressionColumns.reduce((s, name, l) => (l === j ? s : s + c.coefficients[l] * at(name)), 0);
        const xs = present(column);
        if (xs.length < 2) return [];
        const lo = Math.min(...xs);
        const hi = Math.max(...xs);
        return Array.from({ length: 25 }, (_, i) => {
          const x = lo + ((hi - lo) * i) / 24;
          const eta = offset + c.coefficients[j] * x;
          return { x, fit: inverseLink(eta), cluster: String(k) };
        });
      });
      return svgOf(
        {
          ...base,
          width: 340,
          height: 280,
          layer: [
            {
              data: { values: chartRows(rows, column) },
              mark: { type: 'circle', size: 12, opacity: 0.45 },
              encoding: {
                x: { field: 'x', type: 'quantitative', title: column, scale: { zero: false } },
                y: { field: 'actual', type: 'quantitative', title: doc.target, scale: { zero: false } },
                color: clusterColor(doc.components.length),
              },
            },
            {
              data: { values: lines },
              mark: { type: 'line', strokeWidth: 2.5 },
              encoding: {
                x: { field: 'x', type: 'quantitative' },
                y: { field: 'fit', type: 'quantitative' },
                color: clusterColor(doc.components.length),
                detail: { field: 'cluster' },
              },
            },
          ],
        },
        `Each cluster's regression of ${doc.target} on ${column} (other columns at the cluster's means)`,
      );
    })
    .join('');
}

function fitPlots(doc: Posterior, rows: readonly SampleRow[]): string {
  const values = chartRows(rows);
  const color = clusterColor(doc.components.length);
  const what = `predicted ${familyOf(doc.family).predicted}`;
  const lo = Math.min(...values.map((v) => Math.min(v.actual, v.prediction)));
  const hi = Math.max(...values.map((v) => Math.max(v.actual, v.prediction)));
  const predictedVsActual = svgOf(
    {
      ...base,
      width: 300,
      height: 300,
      layer: [
        { data: { values: [{ a: lo, b: hi }] }, mark: { type: 'rule', color: '#999', strokeDash: [4, 3] }, encoding: { x: { field: 'a', type: 'quantitative' }, y: { field: 'a', type: 'quantitative' }, x2: { field: 'b' }, y2: { field: 'b' } } },
        {
          data: { values },
          mark: { type: 'circle', size: 12, opacity: 0.6 },
          encoding: {
            x: { field: 'prediction', type: 'quantitative', title: what, scale: { zero: false } },
            y: { field: 'actual', type: 'quantitative', title: `actual ${doc.target}`, scale: { zero: false } },
            color,
          },
        },
      ],
    },
    'Predicted against actual (dashed: equality)',
  );
  const residuals = svgOf(
    {
      ...base,
      width: 300,
      height: 300,
      layer: [
        { mark: { type: 'rule', color: '#999' }, encoding: { y: { datum: 0 } } },
        {
          data: { values },
          mark: { type: 'circle', size: 12, opacity: 0.6 },
          encoding: {
            x: { field: 'prediction', type: 'quantitative', title: what, scale: { zero: false } },
            y: { field: 'residual', type: 'quantitative', title: 'actual − predicted' },
            color,
          },
        },
      ],
    },
    'Residuals against the prediction',
  );
  const membership = svgOf(
    {
      ...base,
      data: { values },
      width: 360,
      height: 220,
      mark: 'bar',
      encoding: {
        x: { field: 'probability', type: 'quantitative', bin: { extent: [0, 1], step: 0.05 }, title: 'probability of the most likely cluster' },
        y: { aggregate: 'count', type: 'quantitative', title: 'rows' },
        color,
      },
    },
    'Membership probabilities (near 1: clearly assigned)',
  );
  return predictedVsActual + residuals + membership;
}

// ---- tables ----

function keyValueTable(entries: readonly [string, string][]): string {
  return `<table class="kv">${entries.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join('')}</table>`;
}

/** Every setting of model.json, flattened to dotted keys (priors.x, schedule.y). */
function settingsEntries(doc: Posterior, extra: ReportInputs['settings']): [string, string][] {
  const out: [string, string][] = [];
  const walk = (prefix: string, value: unknown) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else out.push([prefix, Array.isArray(value) ? value.join(', ') : String(value)]);
  };
  walk('', doc.state.config);
  for (const [k, v] of Object.entries(extra ?? {})) out.push([k, String(v)]);
  return out;
}

/** Clusters as columns, parameters as rows: stays narrow for any number of columns. */
function componentTable(doc: Posterior): string {
  const clusters = doc.components.map((_, i) => `<th>cluster ${i}</th>`).join('');
  const row = (name: string, cells: string[]) => `<tr><th>${escape(name)}</th>${cells.map((c) => `<td>${escape(c)}</td>`).join('')}</tr>`;
  const pm = (v: number, sd: number) => `${fmt(v)} ± ${fmt(sd)}`;
  const rows = [
    row('weight', doc.components.map((c) => fmt(c.weight))),
    row('expected rows', doc.components.map((c) => fmt(c.size))),
    ...(doc.components.some((c) => c.noiseSd !== undefined) ? [row('noise sd', doc.components.map((c) => fmt(c.noiseSd)))] : []),
    // A class label (multinomial): each non-reference class's regression against the reference class.
    ...(doc.components[0]?.classes
      ? doc.components[0].classes.flatMap(({ class: label }, l) => [
          row(`${label}: intercept`, doc.components.map((c) => pm(c.classes![l].intercept, c.classes![l].interceptSd))),
          ...ownRegressionColumns(doc).map(({ column, j }) => row(`${label}: coef ${column}`, doc.components.map((c) => pm(c.classes![l].coefficients[j], c.classes![l].coefficientSd[j])))),
        ])
      : [
          row('intercept', doc.components.map((c) => pm(c.intercept, c.interceptSd))),
          ...ownRegressionColumns(doc).map(({ column, j }) => row(`coef ${column}`, doc.components.map((c) => pm(c.coefficients[j], c.coefficientSd[j])))),
        ]),
    // A shared slope is one value: one cell across the clusters.
    ...(doc.shared?.columns.map(
      (name, j) =>
        `<tr><th>${escape(`coef ${name} (shared)`)}</th><td colspan="${doc.components.length}">${escape(pm(doc.shared!.coefficients[j], doc.shared!.coefficientSd[j]))}</td></tr>`,
    ) ?? []),
    ...(doc.covariateModel
      ? doc.columns.map((name, j) => row(`mean ${name}`, doc.components.map((c) => `${fmt(c.mean?.[j])} (sd ${fmt(Math.sqrt(c.covariance?.[j]?.[j] ?? NaN))})`)))
      : []),
    // Categorical clustering columns: each level's probability per cluster (docs/model.md §16).
    ...Object.entries(doc.components[0]?.categories ?? {}).flatMap(([column, levels]) =>
      Object.keys(levels).map((level) => row(`P(${column} = ${level})`, doc.components.map((c) => fmt(c.categories?.[column]?.[level])))),
    ),
  ];
  return `<div class="scroll"><table class="grid"><tr><th></th>${clusters}</tr>${rows.join('')}</table></div>`;
}

/** Each candidate clustering column: modelled per cluster or by the shared background, with ln B_j and P(relevant). */
function relevanceTable(doc: Posterior): string {
  if (!doc.covariateRelevance?.length) return '';
  const rows = doc.covariateRelevance.map(
    (c) => `<tr><th>${escape(c.column)}</th><td>${c.relevant ? 'yes' : 'no'}</td><td>${fmt(c.logBayesFactor)}</td><td>${fmt(c.probability)}</td></tr>`,
  );
  return `<h3>Covariate relevance</h3><p class="note">Columns that carry no cluster information are modelled by one shared Gaussian instead of per cluster, so they do not decide the clusters (docs/model.md §13). ln B: log Bayes factor of per-cluster against shared, for the fit's assignments.</p>
<div class="scroll"><table class="grid"><tr><th>column</th><th>clusters on it</th><th>ln B</th><th>P(relevant)</th></tr>${rows.join('')}</table></div>`;
}

function criteria(doc: Posterior, sampleFit: readonly [string, string][]): [string, string][] {
  const out: [string, string][] = [
    ['ELBO (lower bound on ln p(data), data units)', doc.elbo.toFixed(4)],
    ['ELBO per row', fmt(doc.elbo / doc.rows)],
    ['converged', doc.converged ? `yes (|ΔELBO| ≤ ${doc.state.config.schedule.tolerance} × |ELBO|)` : 'no: raise schedule.maxSweeps'],
    ['clusters reported (expected ≥ 1 row)', String(doc.components.length)],
    ['truncation / components', String(doc.state.config.components)],
  ];
  if (doc.concentration !== undefined) out.push(['E[α] (concentration)', fmt(doc.concentration)]);
  if (doc.criteria) {
    const c = doc.criteria;
    out.push(
      ['BIC (lower is better)', c.bic.toFixed(2)],
      ['ICL (lower is better)', c.icl.toFixed(2)],
      ['plug-in log-likelihood (bound)', c.logLikelihood.toFixed(2)],
      ['entropy of the assignments (nats)', fmt(c.entropy)],
      ['free parameters', String(c.parameters)],
    );
  }
  return [...out, ...sampleFit];
}

/** How the fit does on the plotted rows (none without a sample). */
function sampleFitOf(doc: Posterior, rows: readonly SampleRow[]): [string, string][] {
  if (rows.length === 0) return [];
  const n = rows.length;
  const [measure, value] = familyOf(doc.family).fit(rows.map((r) => r.actual), rows.map((r) => r.prediction));
  return [
    [`${measure} on the ${n} plotted rows`, fmt(value)],
    ['mean membership probability', fmt(rows.reduce((s, r) => s + r.probability, 0) / n)],
  ];
}

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
table.kv th,table.grid th:first-child{text-align:left;background:#f6f6f6}.scroll{overflow-x:auto;max-width:100%}
figure{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top;max-width:100%;overflow-x:auto}figcaption{font-weight:600;margin-bottom:.3em}
.note{color:#666}`;

/**
 * The parts of the report that follow from the posterior's components and the sample alone, not
 * from the trace, the ELBO or convergence: the cluster plots and tables, the data, regression and
 * fit plots, and the fit on the plotted rows. They are most of a render, so the aggregator renders
 * them for each new version while the next sweep runs, and the report of the version the run ends
 * on reuses them (lib/pipeline/aggregator.ts). `renderReport(doc, …, renderFigures(other, inputs))`
 * is `renderReport(doc, …)` whenever `other` is `doc` but for its ELBO, convergence and criteria
 * (what a version rendered ahead does not know yet).
 */
export interface ReportFigures {
  /** The cluster sizes and forest plots, and the parameters' table. */
  clusters: string;
  /** The data, regression and fit sections, or the note that there is no sample. */
  data: string;
  /** Criteria rows of the fit on the plotted rows. */
  sampleFit: [string, string][];
}

export function renderFigures(doc: Posterior, inputs: ReportInputs = {}): ReportFigures {
  const rows = inputs.sample?.length ? scoredSample(doc, inputs.sample) : [];
  const data = rows.length
    ? `<h2>Data by cluster</h2><p class="note">${rows.length} rows of the data, each coloured by its most responsible cluster (given its target too). Pairs of the columns whose cluster means differ most relative to their spread within clusters.</p>
${pairPlots(doc, rows)}
<h2>Regressions</h2>${regressionPlots(doc, rows)}
<h2>Fit</h2>${fitPlots(doc, rows)}`
    : '<p class="note">No sample of rows was given to the report, so the data, regression and fit plots are left out.</p>';
  const clusters = `${sizesPlot(doc)}${forestPlot(doc)}
<h3>Parameters (data units; ± posterior sd)</h3>${componentTable(doc)}`;
  return { clusters, data, sampleFit: sampleFitOf(doc, rows) };
}

/**
 * The report. `inputs` is optional: without a sample the page has every plot that needs only the
 * posterior, and says what the sample would add. `figures`: renderFigures of this posterior,
 * rendered ahead.
 */
export function renderReport(
  doc: Posterior,
  trace: readonly ReportTraceEntry[],
  skipped: readonly ReportSkippedRow[],
  inputs: ReportInputs = {},
  figures: ReportFigures = renderFigures(doc, inputs),
): string {
  const files = inputs.files?.length
    ? keyValueTable(inputs.files.map((f) => [f.name, f.bytes === undefined ? '' : `${f.bytes} bytes`]))
    : '';
  const skippedList = skipped.length
    ? `<h3>Skipped rows (${doc.skippedRows}; the first ${skipped.length})</h3><ul>${skipped
        .map((s) => `<li>${escape(`${s.file}:${s.line}: column "${s.column}": ${JSON.stringify(s.value)} ${s.reason}`)}</li>`)
        .join('')}</ul>`
    : '';
  const kind = doc.covariateModel ? 'cluster-weighted model' : 'mixture of regressions (conditional only)';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>clusterwise: ${escape(doc.dataset)}</title><style>${STYLE}</style></head>
<body><h1>${escape(doc.dataset)}: ${doc.family} ${kind} of ${escape(doc.target)}</h1>
<p>${doc.components.length} clusters from ${doc.rows} rows (${doc.skippedRows} skipped); ELBO ${doc.elbo.toFixed(2)}${doc.converged ? '' : ' (not converged)'}; run ${escape(doc.runId)}.
Clustering columns: ${doc.columns.length || doc.state.plan.xc?.length ? escape([...doc.columns, ...(doc.state.plan.xc ?? []).map((c) => `${c} (categorical)`)].join(', ')) : 'none'}${doc.covariateRelevance?.some((c) => !c.relevant) ? ` (without cluster information, modelled as one shared Gaussian: ${escape(doc.covariateRelevance.filter((c) => !c.relevant).map((c) => c.column).join(', '))})` : ''}; regression columns: ${doc.regressionColumns.length ? escape(doc.regressionColumns.join(', ')) : 'none (intercept only)'}${doc.shared ? `; slopes shared by every cluster: ${escape(doc.shared.columns.join(', '))}` : ''}.</p>
<h2>Clusters</h2>${figures.clusters}
${figures.data}
<h2>Convergence</h2>${elboPlots(doc, trace)}
<h2>Model criteria</h2>${keyValueTable(criteria(doc, figures.sampleFit))}${relevanceTable(doc)}
<h2>Data</h2>${keyValueTable([
    ['rows used', String(doc.rows)],
    ['rows skipped (unusable)', String(doc.skippedRows)],
    ...Object.entries(doc.missingValues ?? {}).map(([column, count]): [string, string] => [`missing ${column} (integrated out)`, String(count)]),
  ])}${files ? `<h3>Input files</h3>${files}` : ''}${skippedList}
<h2>Settings</h2>${keyValueTable(settingsEntries(doc, inputs.settings))}
</body></html>
`;
}
