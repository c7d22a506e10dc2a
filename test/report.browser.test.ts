/**
 * report.html in headless Chromium (Debian's `chromium`, driven by playwright-core): for the forum
 * example and a 20-covariate fit, the plots are in the DOM with a size, the console stays free of
 * errors, and the page requests nothing beyond itself. Skipped, with a message, where Chromium is
 * not installed (.ci/run installs it).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS } from '../scripts/report-screenshot.js';
import { forumReport, manyCovariatesReport } from './support/report-fixtures.js';

const available = existsSync(CHROMIUM);
if (!available) console.warn(`report.browser.test.ts skipped: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);

describe.skipIf(!available)('report.html in Chromium', () => {
  let browser: Browser;
  let dir: string;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    dir = mkdtempSync(join(tmpdir(), 'clusterwise-report-'));
  });
  afterAll(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function open(name: string, html: string) {
    const file = join(dir, `${name}.html`);
    writeFileSync(file, html);
    const url = pathToFileURL(file).href;
    const page = await browser.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('request', (request) => {
      if (request.url() !== url) requests.push(request.url());
    });
    await page.goto(url, { waitUntil: 'load' });
    const plots = await page.$$eval('figure', (figures) =>
      figures.map((f) => {
        const svg = f.querySelector('svg');
        const box = svg?.getBoundingClientRect();
        return { caption: f.querySelector('figcaption')?.textContent ?? '', marks: svg?.querySelectorAll('path, line, circle, rect').length ?? 0, width: box?.width ?? 0, height: box?.height ?? 0 };
      }),
    );
    const pageWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.close();
    return { plots, problems, requests, pageWidth };
  }

  it('renders the forum example: every plot drawn, no console error, no request', async () => {
    const { plots, problems, requests } = await open('forum', await forumReport());
    expect(plots.map((p) => p.caption)).toEqual(
      expect.arrayContaining(['Cluster sizes (expected number of rows)', 'x2 against x1, coloured by cluster', 'Predicted against actual (dashed: equality)', 'ELBO trace']),
    );
    expect(plots).toHaveLength(10);
    for (const plot of plots) {
      expect(plot.width, plot.caption).toBeGreaterThan(100);
      expect(plot.height, plot.caption).toBeGreaterThan(50);
      expect(plot.marks, plot.caption).toBeGreaterThan(5);
    }
    expect(problems).toEqual([]);
    expect(requests).toEqual([]);
  });

  it('renders a 20-covariate fit within the page width, without errors or requests', async () => {
    const { plots, problems, requests, pageWidth } = await open('twenty', await manyCovariatesReport(20, 600));
    expect(plots.filter((p) => p.caption.endsWith('coloured by cluster'))).toHaveLength(3);
    for (const plot of plots) expect(plot.marks, plot.caption).toBeGreaterThan(5);
    expect(pageWidth).toBeLessThanOrEqual(1280); // the default viewport: nothing overflows it
    expect(problems).toEqual([]);
    expect(requests).toEqual([]);
  });
});
