/**
 * `npm run report:screenshot -- [report.html] [out.png]`: a full-page screenshot of a report in
 * headless Chromium, to look at it (or attach it) without a desktop. Defaults to the report of
 * `npm run example`: clusterwise-out/report.html → clusterwise-out/report.png.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

/** Debian's package (`apt-get install -y chromium`); set CHROMIUM_PATH for another one. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless in a container (no sandbox, no GPU), without Chromium's own background traffic. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

async function main(report = 'clusterwise-out/report.html', out = report.replace(/\.html?$/, '') + '.png'): Promise<void> {
  if (!existsSync(report)) throw new Error(`${report}: not found (run \`npm run example\` to make one)`);
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(pathToFileURL(resolve(report)).href, { waitUntil: 'load' });
    await page.screenshot({ path: out, fullPage: true });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main(process.argv[2], process.argv[3]).catch((error: Error) => {
    console.error(`report:screenshot: ${error.message}`);
    process.exitCode = 1;
  });
}
