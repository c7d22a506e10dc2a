#!/usr/bin/env node
/** The `clusterwise` command line: fit and predict locally; submit and status against a deployed stack. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../lib/config.js';
import { fitLocal } from '../lib/local/runner.js';
import type { PosteriorDocument } from '../lib/model/summary.js';
import type { Progress } from '../lib/pipeline/run.js';
import { predictFile } from './predict.js';
import { progressPrinter } from './progress.js';

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number, got "${value}"`);
  return n;
};
const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

export function buildProgram(): Command {
  const program = new Command('clusterwise')
    .description('Mixtures of regressions (cluster-weighted models) fitted by variational Bayes')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('fit')
    .description('fit a mixture of regressions to CSV files on this machine')
    .argument('<csv...>', 'CSV files with a header line')
    .requiredOption('--target <column>', 'the response column')
    .option('--columns <a,b>', 'clustering columns (default: every numeric column but the target)', list)
    .option('--regression-columns <a,b>', 'regression columns (default: the clustering columns)', list)
    .addOption(new Option('--family <family>', 'response family').choices(['gaussian', 'bernoulli']))
    .option('--components <T>', 'components (truncation level for stick-breaking)', positiveInt('--components'))
    .addOption(new Option('--weights <kind>', 'mixing weights').choices(['stick-breaking', 'dirichlet']))
    .option('--no-covariate-model', 'conditional-only mixture of regressions (no model of x)')
    .option('--out <dir>', 'output folder', 'clusterwise-out')
    .option('--seed <n>', 'random seed', positiveInt('--seed'))
    .option('--workers <n>', 'worker threads (0: run inline)', positiveInt('--workers'))
    .addOption(new Option('--backend <name>', 'kernel backend').choices(['auto', 'tensorflow', 'wasm', 'cpu', 'reference']).default('auto'))
    .option('--assign', 'also write per-row assignments to OUT/assignments.csv')
    .option('--config <file>', 'a model.json with further settings (priors, schedule); flags win')
    .action(async (files: string[], o) => {
      for (const f of files) if (!existsSync(f)) throw new UserError(`${f}: file not found`);
      const fromFile = o.config ? await readConfigFile(o.config) : {};
      const config = parseConfig(
        {
          ...fromFile,
          target: o.target,
          ...(o.columns ? { columns: o.columns } : {}),
          ...(o.regressionColumns ? { regressionColumns: o.regressionColumns } : {}),
          ...(o.family ? { family: o.family } : {}),
          ...(o.components !== undefined ? { components: o.components } : {}),
          ...(o.weights ? { weights: o.weights } : {}),
          ...(o.covariateModel === false ? { covariateModel: false } : {}),
          ...(o.seed !== undefined ? { seed: o.seed } : {}),
          ...(o.assign ? { assignments: true } : {}),
        },
        'command line',
      );
      const progress = progressPrinter(process.stderr);
      const started = Date.now();
      try {
        const result = await fitLocal({
          files, config, outDir: o.out, workers: o.workers, backend: o.backend,
          onProgress: (p: Progress) => progress.update(p),
        });
        progress.stop();
        const p = result.posterior;
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        console.log(
          `${p.components.length} clusters, ${p.rows} rows used, ${p.skippedRows} skipped, ELBO ${p.elbo.toFixed(2)}` +
            `${p.converged ? '' : ' (not converged: raise schedule.maxSweeps)'}; ${seconds} s with ${result.kernel}`,
        );
        console.log(clusterTable(p));
        console.log(`wrote ${result.posteriorPath}, ${result.reportPath}${result.assignmentsPath ? `, ${result.assignmentsPath}` : ''}`);
      } finally {
        progress.stop();
      }
    });

  program
    .command('predict')
    .description('score rows of a CSV with a fitted posterior')
    .argument('<posterior>', 'posterior.json written by fit')
    .argument('<csv>', 'rows to score (the target column is not needed)')
    .option('--out <file>', 'write here instead of standard output')
    .option('--workers <n>', 'worker threads (0: score in this thread)', positiveInt('--workers'))
    .addOption(new Option('--backend <name>', 'kernel backend').choices(['auto', 'tensorflow', 'wasm', 'cpu', 'reference']).default('auto'))
    .action(async (posterior: string, csv: string, o) => {
      const result = await predictFile(posterior, csv, { out: o.out, workers: o.workers, backend: o.backend });
      if (result.skipped) console.error(`${csv}: ${result.skipped} rows could not be scored (missing or non-numeric values); their prediction cells are empty`);
      if (o.out) console.error(`wrote ${o.out}: ${result.rows} rows scored`);
    });

  const stackOptions = (command: Command) =>
    command
      .requiredOption('--bucket <name>', 'the stack\'s bucket (output BucketName)')
      .option('--stack <name>', 'the stack name (its queues are named after it)', 'Clusterwise')
      .option('--endpoint <url>', 'an S3/SQS-compatible endpoint (e.g. an emulator) for every AWS client')
      .option('--region <region>', 'AWS region (default: from the environment)');

  stackOptions(
    program
      .command('submit')
      .description('start a fit of datasets/<dataset>/ in a deployed stack (planned here, run there)')
      .argument('<dataset>', 'dataset name')
      .option('--config <file>', 'settings over datasets/<dataset>/model.json')
      .addOption(new Option('--backend <name>', 'kernel backend for the initialization').choices(['auto', 'tensorflow', 'wasm', 'cpu', 'reference']).default('auto')),
  ).action(async (dataset: string, o) => {
    const { submit } = await import('./aws.js');
    const overrides = o.config ? await readConfigFile(o.config) : {};
    console.log(await submit({ ...o, dataset, overrides }));
  });

  stackOptions(
    program.command('status').description('progress of the latest run of a dataset in a deployed stack').argument('<dataset>', 'dataset name'),
  ).action(async (dataset: string, o) => {
    const { status } = await import('./aws.js');
    const result = await status({ ...o, dataset });
    console.log(result.text);
    if (result.failed) process.exitCode = 1;
  });

  return program;
}

/** The clusters as a plain-text table (data units; at most 6 columns of x and of coefficients shown). */
export function clusterTable(p: PosteriorDocument): string {
  const fmt = (v: number) => Number(v.toPrecision(4)).toString();
  const few = (names: string[], values: number[]) =>
    values.slice(0, 6).map((v, i) => `${names[i]}=${fmt(v)}`).join(' ') + (values.length > 6 ? ' …' : '');
  const rows = p.components.map((c, i) => [
    String(i),
    fmt(c.weight),
    fmt(c.size),
    ...(p.covariateModel ? [few(p.columns, c.mean ?? [])] : []),
    fmt(c.intercept),
    few(p.regressionColumns, c.coefficients),
    ...(p.family === 'gaussian' ? [fmt(c.noiseSd ?? NaN)] : []),
  ]);
  const head = ['cluster', 'weight', 'size', ...(p.covariateModel ? ['mean'] : []), 'intercept', 'coefficients', ...(p.family === 'gaussian' ? ['noise sd'] : [])];
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  return [head, ...rows].map((r) => r.map((v, j) => v.padEnd(widths[j])).join('  ').trimEnd()).join('\n');
}

export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(file, 'utf8').catch(() => {
    throw new UserError(`${file}: file not found`);
  });
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UserError(`${file}: not valid JSON (${(error as Error).message})`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Actions report a non-zero result through process.exitCode; start each call from a clean one.
  process.exitCode = undefined;
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (error) {
    const e = error as { code?: string; exitCode?: number; message?: string };
    if (e.code?.startsWith('commander.')) return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
    console.error(`clusterwise: ${e.message ?? String(error)}`);
    if (process.env.CLUSTERWISE_DEBUG) console.error(error);
    return 1;
  }
}

/** True when this file is the program being run (directly or through the npm bin link). */
function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv);
}
