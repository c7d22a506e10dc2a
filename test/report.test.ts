/**
 * report.html as a file: every plot present as static SVG, nothing that would load or run
 * anything, and a layout that holds from 2 to 50 covariates (test/report.browser.test.ts renders
 * it in Chromium).
 */
import { describe, expect, it } from 'vitest';
import { renderReport } from '../lib/model/report.js';
import { warmReport } from '../lib/model/report-warmup.js';
import { fit } from '../lib/api.js';
import { forumReport, manyCovariatesReport, sharedReport } from './support/report-fixtures.js';

const figures = (html: string) => [...html.matchAll(/<figcaption>([^<]*)<\/figcaption><svg /g)].map((m) => m[1]);

/** Nothing in the page that a browser would fetch or execute. */
function expectSelfContained(html: string) {
  expect(html).not.toMatch(/<script|<link|<iframe|<img|\bsrc=|href=|url\(|@import/i);
  // The only URLs are XML namespace names, which are never fetched.
  const urls = [...html.matchAll(/https?:\/\/[^\s"')<]+/g)].map((m) => m[0]);
  expect(new Set(urls)).toEqual(new Set(['http://www.w3.org/2000/svg', 'http://www.w3.org/1999/xlink']));
}

describe('report.html', () => {
  it('has every plot for the forum example, data coloured by cluster among them', async () => {
    const html = await forumReport();
    expect(figures(html)).toEqual([
      'Cluster sizes (expected number of rows)',
      'Standardized coefficients with 95% intervals (per sd of the column, in sd of y)',
      'x2 against x1, coloured by cluster',
      "Each cluster's regression of y on x1 (other columns at the cluster's means)",
      "Each cluster's regression of y on x2 (other columns at the cluster's means)",
      'Predicted against actual (dashed: equality)',
      'Residuals against the prediction',
      'Membership probabilities (near 1: clearly assigned)',
      'ELBO trace',
      expect.stringMatching(/^Distance to the final ELBO/),
    ]);
    expectSelfContained(html);
    // Each chart is one image to assistive technology, labelled by its caption; no description per point.
    expect(html.match(/<svg role="img" aria-label="/g)).toHaveLength(figures(html).length);
    expect(html).not.toMatch(/<path [^>]*aria-label=/);
    for (const text of ['rows used', 'examples/forum.csv', 'priors.clusterVariance', 'schedule.tolerance', 'ELBO per row', 'RMSE', 'BIC (lower is better)']) {
      expect(html).toContain(text);
    }
  });

  it('warms up on a throwaway report with every kind of figure a real one has', async () => {
    const kinds = (html: string) => figures(html).map((c) => c.replace(/[^ ]+ against [^ ]+, coloured/, 'pair, coloured').replace(/ on [^ ]+ \(/, ' on a column (').replace(/tolerance [^ ]+ ×/, 'tolerance ×'));
    expect(new Set(kinds(warmReport()))).toEqual(new Set(kinds(await forumReport())));
  });

  it('shows shared slopes once: a "shared" panel of the forest plot and one table row each, spanning the clusters', async () => {
    const html = await sharedReport(2000);
    expect(html.match(/<tr><th>coef x1 \(shared\)<\/th><td colspan="4">/g)).toHaveLength(1);
    expect(html.match(/<tr><th>coef x2 \(shared\)<\/th>/g)).toHaveLength(1);
    expect(html).not.toMatch(/<tr><th>coef x[12]<\/th>/);
    // The forest plot's panels: the four clusters have no slope of their own, so "shared" is the only one.
    expect(figures(html)).toContain('Standardized coefficients with 95% intervals (per sd of the column, in sd of y)');
    expect(html).toContain('>shared<');
    expectSelfContained(html);
  });

  it('stays readable with 50 covariates: three pairs of the most informative, a parameter row per column', async () => {
    const html = await manyCovariatesReport(50, 600);
    const captions = figures(html);
    expect(captions.filter((c) => c.endsWith('coloured by cluster'))).toHaveLength(3);
    expect(captions.filter((c) => c.startsWith("Each cluster's regression"))).toHaveLength(2);
    expect(html.match(/<tr><th>coef x\d+<\/th>/g)).toHaveLength(50);
    expectSelfContained(html);
  });

  it('keeps the old call working: without a sample it draws what the posterior alone shows, and says so', async () => {
    const { posterior } = await fit('examples/forum.csv', { target: 'y', workers: 0, backend: 'reference' });
    const html = renderReport(posterior, posterior.trace ?? [], []);
    expect(figures(html)).toEqual([
      'Cluster sizes (expected number of rows)',
      'Standardized coefficients with 95% intervals (per sd of the column, in sd of y)',
      'ELBO trace',
      expect.stringMatching(/^Distance to the final ELBO/),
    ]);
    expect(html).toContain('No sample of rows was given');
  });

  it('draws a converged ELBO trace flat, not as a full-height jump', async () => {
    const { posterior } = await fit('examples/forum.csv', { target: 'y', workers: 0, backend: 'reference' });
    const trace = [
      { phase: 'batch', elbo: -380.170385 },
      { phase: 'batch', elbo: -380.170377 },
    ];
    const html = renderReport({ ...posterior, elbo: -380.170377 }, trace, []);
    const elbo = html.slice(html.indexOf('<figcaption>ELBO trace'));
    // The y axis spans at least 1000 × tolerance × |ELBO| (0.38 here), so its labels differ by more than 0.01.
    const labels = [...elbo.slice(0, elbo.indexOf('</figure>')).matchAll(/>(−?-?380\.\d+)</g)].map((m) => Number(m[1].replace('−', '-')));
    expect(labels.length).toBeGreaterThan(1);
    expect(Math.max(...labels) - Math.min(...labels)).toBeGreaterThan(0.01);
  });
});
