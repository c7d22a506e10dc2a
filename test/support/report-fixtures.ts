/**
 * Reports of real fits for the report tests: the forum example (2 covariates) and generated data
 * with many covariates, each with a sample of its rows as the report's caller passes it.
 */
import { readFileSync } from 'node:fs';
import { largeRows } from '../../examples/generate.js';
import { fit, type FitOptions } from '../../lib/api.js';
import type { Row } from '../../lib/rows.js';
import { renderReport } from '../../lib/model/report.js';
import { sharedCsv } from './shared-data.js';

type FitSettings = Pick<FitOptions, 'components' | 'schedule' | 'sharedCoefficients'>;

/** Records from CSV text (plain numeric CSV: no quoting). */
function records(text: string): Row[] {
  const [header, ...lines] = text.trim().split('\n');
  const columns = header.split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [columns[i], Number(v)])));
}

async function reportOf(rows: Row[] | string, sample: Row[], files: { name: string; bytes?: number }[], settings: FitSettings = {}): Promise<string> {
  const { posterior } = await fit(rows, { target: 'y', workers: 0, backend: 'reference', ...settings });
  return renderReport(posterior, posterior.trace ?? [], posterior.skipped ?? [], { sample, files, settings: { backend: 'reference' } });
}

/** The forum example's report (examples/forum.csv: 4 clusters over x1, x2). */
export async function forumReport(): Promise<string> {
  const text = readFileSync('examples/forum.csv', 'utf8');
  return reportOf('examples/forum.csv', records(text), [{ name: 'examples/forum.csv', bytes: Buffer.byteLength(text) }]);
}

/** A report of `rows` generated rows with D covariates in 3 clusters. */
export async function manyCovariatesReport(D: number, rows: number): Promise<string> {
  const data = records([...largeRows(rows, D, 3, 5)].join(''));
  // Few components and restarts: the fit is not what these tests look at (D = 50 with the defaults
  // takes half a minute with the reference kernel).
  return reportOf(data, data, [{ name: `generated ${D} covariates` }], { components: 5, schedule: { restarts: 2 } });
}

/** A report of a fit with shared slopes of x1 and x2 (test/support/shared-data.ts: 4 clusters, gaussian). */
export async function sharedReport(rows: number): Promise<string> {
  const data = records(sharedCsv(rows, 'gaussian', 51));
  return reportOf(data, data, [{ name: 'generated, shared slopes' }], { components: 6, sharedCoefficients: ['x1', 'x2'], schedule: { restarts: 2 } });
}
