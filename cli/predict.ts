/** `clusterwise predict`: score new rows with a fitted posterior; every input line comes out again. */
import { readFile, writeFile } from 'node:fs/promises';
import { parseHeader, parseRows } from '../lib/data/csv.js';
import { DataError, fileNotFound } from '../lib/data/errors.js';
import { toBatch, type ColumnPlan } from '../lib/data/dataset.js';
import { predict } from '../lib/model/predict.js';
import type { PosteriorDocument } from '../lib/model/summary.js';

export async function predictFile(posteriorPath: string, csvPath: string, outPath?: string): Promise<{ rows: number; skipped: number; text: string }> {
  const doc = JSON.parse(await readFile(posteriorPath, 'utf8').catch((e) => { throw fileNotFound(posteriorPath, e); })) as PosteriorDocument;
  if (doc.format !== 'clusterwise/posterior@1') throw new DataError(`not a clusterwise posterior (format ${JSON.stringify(doc.format)})`, { file: posteriorPath });
  const bytes = new Uint8Array(await readFile(csvPath).catch((e) => { throw fileNotFound(csvPath, e); }));
  const header = parseHeader(bytes, csvPath);
  const fitted = doc.state.plan;
  const columns = [...new Set([...fitted.x, ...fitted.r])];
  for (const c of columns) if (!header.columns.includes(c)) throw new DataError(`missing column "${c}" the model was fitted with`, { file: csvPath, line: 1 });
  const select = columns.map((column) => ({ column, kind: 'number' as const }));
  const plan: ColumnPlan = { ...fitted, select, xSlot: fitted.x.map((c) => columns.indexOf(c)), rSlot: fitted.r.map((c) => columns.indexOf(c)), ySlot: -1 };
  const data = bytes.subarray(header.dataStart);
  const parsed = parseRows(data, { file: csvPath, header: header.columns, select, firstLine: 2 });
  const result = predict(doc, toBatch(plan, doc.state.standardization, parsed));

  const gaussian = doc.family === 'gaussian';
  const extra = gaussian ? 'cluster,cluster_probability,prediction,prediction_sd' : 'cluster,cluster_probability,probability';
  const lines = Buffer.from(data).toString('utf8').split('\n');
  const byLine = new Map<number, number>();
  parsed.rowLine.forEach((line, row) => byLine.set(line, row));
  const headerLine = Buffer.from(bytes.subarray(0, header.dataStart)).toString('utf8').replace(/^\uFEFF/, '').replace(/\r?\n$/, '');
  const out = [`${headerLine},${extra}`];
  const blank = gaussian ? ',,,' : ',,';
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    const row = byLine.get(i);
    if (row === undefined) return void out.push(line + ',' + blank);
    const cells = [result.cluster[row], result.clusterProbability[row].toPrecision(6), result.mean[row].toPrecision(8)];
    if (gaussian) cells.push(result.sd![row].toPrecision(6));
    out.push(`${line},${cells.join(',')}`);
  });
  const text = out.join('\n') + '\n';
  if (outPath) await writeFile(outPath, text);
  return { rows: parsed.rows, skipped: parsed.skippedCount, text };
}
