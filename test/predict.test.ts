import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { parseRows } from '../lib/data/csv.js';
import { toBatch } from '../lib/data/dataset.js';
import { loadKernel } from '../lib/kernel/backend.js';
import { predictFile } from '../lib/local/predict-file.js';
import { writeInteger, writePrecision } from '../lib/local/digits.js';
import { predictPlan } from '../lib/local/score-chunk.js';
import { predict, Predictor, readPosterior } from '../lib/model/predict.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import { runCli, tempDir } from './support/cli.js';

const dir = tempDir();
const posteriorPath = path.join(dir, 'fit', 'posterior.json');
let text = '';
let doc: PosteriorDocument;

beforeAll(() => {
  const fit = runCli(['fit', 'examples/forum.csv', '--target', 'y', '--out', path.join(dir, 'fit'), '--workers', '0']);
  expect(fit.code).toBe(0);
  text = readFileSync(posteriorPath, 'utf8');
  doc = readPosterior(text, posteriorPath);
}, 60_000);

async function scoreToText(csv: string, options: { workers?: number; chunkBytes?: number; backend?: 'wasm' | 'reference' } = {}) {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (b: Buffer) => parts.push(b));
  const result = await predictFile({ posterior: { text, file: 'posterior.json' }, csv, out, ...options });
  out.end();
  return { text: Buffer.concat(parts).toString('utf8'), result };
}

describe('predict', () => {
  it('the TensorFlow.js products agree with the float64 reference', async () => {
    const bytes = readFileSync('examples/forum.csv');
    const header = ['x1', 'x2', 'y'];
    const plan = predictPlan(doc);
    const parsed = parseRows(new Uint8Array(bytes).subarray(bytes.indexOf(10) + 1), { file: 'f', header, select: plan.select });
    const batch = toBatch(plan, doc.state.standardization, parsed);
    const reference = predict(doc, batch);
    await loadKernel('wasm');
    const predictor = new Predictor(doc, 'wasm');
    predictor.predict(batch);
    const tensors = tf.memory().numTensors;
    const fast = predictor.predict(batch);
    expect(tf.memory().numTensors).toBe(tensors); // nothing left behind per call: memory stays flat over a stream
    expect([...fast.cluster]).toEqual([...reference.cluster]);
    for (let i = 0; i < batch.n; i++) {
      expect(fast.clusterProbability[i]).toBeCloseTo(reference.clusterProbability[i], 5);
      expect(Math.abs(fast.mean[i] - reference.mean[i])).toBeLessThan(1e-5 * (1 + Math.abs(reference.mean[i])));
      expect(Math.abs(fast.sd![i] - reference.sd![i])).toBeLessThan(1e-5 * reference.sd![i]);
    }
  });

  it('streams: chunks, threads and records with quoted line breaks give the same bytes as one pass', async () => {
    const [head, ...rows] = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
    const lines = [`id,${head}`, ...rows.map((r, i) => (i === 7 ? `"a\nb",${r}` : i === 9 ? `x9,${r.replace(/^[^,]*/, 'oops')}` : `r${i},${r}`))];
    const csv = path.join(dir, 'quoted.csv');
    writeFileSync(csv, lines.join('\n') + '\n');
    const whole = await scoreToText(csv, { workers: 0 });
    expect(whole.result).toMatchObject({ rows: 999, skipped: 1 });
    expect(whole.result.skippedExamples[0]).toMatchObject({ line: 12, column: 'x1', value: 'oops', reason: 'not a number' });
    const out = whole.text.split('\n');
    expect(out[0]).toBe('id,x1,x2,y,cluster,cluster_probability,prediction,prediction_sd,log_density'); // the file has the target
    expect(out[8]).toMatch(/^"a$/); // the record's first line, then its second with the cells
    expect(out[9]).toMatch(/^b",[^,]+,[^,]+,[^,]+,\d+,/);
    expect(out[11]).toMatch(/^x9,oops,.*,,,,,$/);
    const chunked = await scoreToText(csv, { workers: 0, chunkBytes: 1000 });
    expect(chunked.text).toBe(whole.text);
    const threaded = await scoreToText(csv, { workers: 2, chunkBytes: 3000 });
    expect(threaded.result.threads).toBe(2);
    expect(threaded.text).toBe(whole.text);
    expect(threaded.result.skippedExamples).toEqual(whole.result.skippedExamples);
  }, 60_000);

  it('names the rows whose target is there but unreadable, and keeps a record whose quote never closes on its own line, quoted', async () => {
    const csv = path.join(dir, 'bad-target.csv');
    writeFileSync(csv, 'x1,x2,y\n0.77,1.93,8.5\n1.3,-1.3,abc\n0.5,0.5,\n"1.3,-1.3,2\n1,1,2\n');
    const { text: scored, result } = await scoreToText(csv, { workers: 0 });
    expect(result.logDensity).toMatchObject({ rows: 2, unreadable: 1, unreadableExamples: [{ file: csv, line: 3, column: 'y', value: 'abc', reason: 'not a number' }] });
    expect(result).toMatchObject({ rows: 4, skipped: 1, skippedExamples: [{ line: 5, reason: 'unterminated quoted field' }] });
    const lines = scored.trimEnd().split('\n');
    expect(lines).toHaveLength(6); // the header and one line per record: the open quote swallows nothing
    expect(lines[2]).toMatch(/^1\.3,-1\.3,abc,\d+,[^,]+,[^,]+,[^,]+,$/); // scored, without log_density
    expect(lines[4]).toBe('"""1.3,-1.3,2",,,,,,,');
    expect(lines[5]).toMatch(/^1,1,2,\d+,/);
    const cli = runCli(['predict', posteriorPath, csv, '--workers', '0']);
    expect(cli.code).toBe(0);
    expect(cli.stderr).toContain(`2 rows without a readable "y" (1 missing, 1 unreadable) have no log_density, e.g.:\n  ${csv}:3: column "y": "abc" is not a number\n`);
  });

  it('scores a file without the id column of a model fitted with one (the id only names fit\'s rows)', async () => {
    const fitted = path.join(dir, 'with-id');
    const [head, ...rows] = readFileSync('examples/forum.csv', 'utf8').trim().split('\n');
    const withId = path.join(dir, 'with-id.csv');
    writeFileSync(withId, [`id,${head}`, ...rows.map((r, i) => `r${i},${r}`)].join('\n') + '\n');
    expect(runCli(['fit', withId, '--target', 'y', '--id', 'id', '--out', fitted, '--workers', '0']).code).toBe(0);
    const scored = runCli(['predict', path.join(fitted, 'posterior.json'), 'examples/forum.csv', '--workers', '0']);
    expect(scored.stderr).not.toContain('clusterwise:');
    expect(scored.code).toBe(0);
    expect(scored.stdout.trim().split('\n')).toHaveLength(1001);
  }, 60_000);

  it("refuses a file that already holds predict's columns (its own output), naming them", async () => {
    const csv = path.join(dir, 'scored.csv');
    writeFileSync(csv, (await scoreToText('examples/forum.csv', { workers: 0 })).text);
    await expect(scoreToText(csv, { workers: 0 })).rejects.toThrow(
      `${csv}:1: already has columns "cluster", "cluster_probability", "prediction", "prediction_sd", "log_density" that predict adds (is it predict's output?); score the file without them`,
    );
  });

  it('reads ;-separated files and answers in kind', async () => {
    const csv = path.join(dir, 'semi.csv');
    writeFileSync(csv, 'x1;x2\n1;1\n-1;-1\n');
    const { text: scored } = await scoreToText(csv);
    expect(scored.split('\n')[0]).toBe('x1;x2;cluster;cluster_probability;prediction;prediction_sd');
    expect(scored.split('\n')[1]).toMatch(/^1;1;\d+;/);
  });
});

describe('predict writes numbers as toPrecision does', () => {
  it('for every magnitude, sign, tie and power of ten (the cells do not depend on the fast path)', () => {
    const out = new Uint8Array(64);
    const written = (v: number, p: number) => Buffer.from(out.subarray(0, writePrecision(out, 0, v, p))).toString('latin1');
    const values: number[] = [0, -0, NaN, Infinity, -Infinity, 1e-6, 9.999999e-7, 1e21, 0.99999951, 99999999.5];
    for (let e = -8; e < 12; e++) for (const m of [1, 9.99999995, 9.9999995, 0.5, 1.5, 2.5, 1.25, 0.125, 999999.5]) values.push(m * 10 ** e, -m * 10 ** e);
    let seed = 1;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    for (let i = 0; i < 100_000; i++) values.push((random() - 0.5) * 10 ** Math.floor(random() * 24 - 10));
    const wrong = values.flatMap((v) => [1, 6, 8, 9].filter((p) => written(v, p) !== v.toPrecision(p)).map((p) => `${v} to ${p}: ${written(v, p)}`));
    expect(wrong).toEqual([]);
    for (const v of [0, 7, 10, 99, -1, 123456789, 2147483647]) expect(Buffer.from(out.subarray(0, writeInteger(out, 0, v))).toString()).toBe(String(v));
  });
});

describe('predict with a bad posterior names the file and says what is wrong', () => {
  const bad = (name: string, content: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, content);
    const r = runCli(['predict', file, 'examples/forum.csv']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    return r.stderr;
  };

  it('not JSON (report.html given instead), truncated, or another kind of JSON', () => {
    expect(bad('report.html', '<!doctype html><p>hi</p>')).toMatch(/report\.html: not valid JSON \(.*\); give the posterior\.json that fit wrote/);
    expect(bad('cut.json', text.slice(0, 500))).toMatch(/cut\.json: not valid JSON/);
    expect(bad('other.json', '{"a": 1}')).toContain('other.json: not a clusterwise posterior (format missing)');
    expect(bad('array.json', '[]')).toContain('array.json: not a clusterwise posterior');
  });

  it('a posterior edited to another family, or with its state damaged', () => {
    const edited = JSON.parse(text);
    edited.family = 'bernoulli';
    expect(bad('family.json', JSON.stringify(edited))).toContain(
      'family.json: invalid posterior: family "bernoulli" but the state was fitted as "gaussian" (the file was edited or is damaged)',
    );
    const both = JSON.parse(text);
    both.family = 'bernoulli';
    both.state.config.family = 'bernoulli';
    expect(bad('both.json', JSON.stringify(both))).toContain('both.json: invalid posterior: state.lambda is not the state of a bernoulli model');
    const short = JSON.parse(text);
    short.state.lambda = short.state.lambda.slice(0, 24); // 18 bytes: 2 numbers and a piece
    expect(bad('short.json', JSON.stringify(short))).toMatch(/short\.json: invalid posterior: state\.lambda is 18 bytes, not whole float64 numbers/);
    const noPlan = JSON.parse(text);
    delete noPlan.state.plan;
    expect(bad('noplan.json', JSON.stringify(noPlan))).toContain('noplan.json: invalid posterior: state.plan:');
    const badSd = JSON.parse(text);
    badSd.state.standardization.xSd[0] = 0;
    expect(bad('sd.json', JSON.stringify(badSd))).toContain('sd.json: invalid posterior: state.standardization.xSd.0: must be positive');
  });
});
