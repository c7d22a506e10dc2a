#!/usr/bin/env node
/** The `clusterwise` command line: fit and predict locally; submit and status against a deployed stack. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseConfig, parseConfigLayers, type Delimiter } from '../lib/config.js';
import { ClusterwiseError } from '../lib/errors.js';
import { formatSkipped, type SkippedRow } from '../lib/data/csv.js';
import { BACKENDS } from '../lib/kernel/backend.js';
import { fitLocal } from '../lib/local/runner.js';
import { FAMILY_NAMES } from '../lib/model/families/index.js';
import { ownRegressionColumns, type PosteriorDocument } from '../lib/model/summary.js';
import { joinAssignments } from './assignments.js';
import { lockOutput } from '../lib/local/out-lock.js';
import { MAX_THREADS } from '../lib/local/threads.js';
import { predictFile } from './predict.js';
import { progressPrinter, seconds } from './progress.js';

/** A whole number written in decimal digits only: "0x10", "1e3", "2.0", "" are refused. */
const wholeNumber = (name: string) => (value: string) => {
  if (!/^\d{1,9}$/.test(value.trim())) throw new InvalidArgumentError(`${name} must be a whole number written in digits, got "${value}"`);
  return Number(value);
};
const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);
const DELIMITER_NAMES: Record<string, Delimiter> = { ',': ',', comma: ',', ';': ';', semicolon: ';', tab: '\t', '\\t': '\t', '\t': '\t', '|': '|', pipe: '|' };
const delimiter = (value: string): Delimiter => {
  const d = DELIMITER_NAMES[value];
  if (d === undefined) throw new InvalidArgumentError(`--delimiter must be one of , ; tab | (or comma, semicolon, pipe), got "${value}"`);
  return d;
};
const workers = (value: string) => {
  const n = wholeNumber('--workers')(value);
  if (n > MAX_THREADS) throw new InvalidArgumentError(`--workers must be at most ${MAX_THREADS} (2 × the ${availableParallelism()} cores here), got ${n}`);
  return n;
};
/** A probability strictly between 0 and 1, written as a decimal (0.9, .95). */
const probability = (name: string) => (value: string) => {
  const p = Number(value);
  if (!/^\s*0?\.\d+\s*$/.test(value) || !(p > 0 && p < 1))
    throw new InvalidArgumentError(`${name} must be a probability strictly between 0 and 1 written as a decimal (e.g. 0.9), got "${value}"`);
  return p;
};
const BACKEND_CHOICES = ['auto', ...BACKENDS];

/** The defaults of the one config schema, for the help text. */
const DEFAULTS = parseConfig({ target: '-' });

function packageVersion(): string {
  // dist/cli/main.js or cli/main.ts: package.json is two or one folder up.
  for (const up of ['../../package.json', '../package.json']) {
    const file = fileURLToPath(new URL(up, import.meta.url));
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('clusterwise')
    .description('Mixtures of regressions (cluster-weighted models) fitted by variational Bayes')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(clusterwise <command> --help lists the options and their defaults)')
    .exitOverride();

  program
    .command('fit')
    .description('fit a mixture of regressions to CSV files on this machine')
    .argument('<csv...>', 'CSV files with a header line')
    .option('--target <column>', 'the response column (required here or as "target" in --config)')
    .option('--columns <a,b>', 'clustering columns (default: every numeric column but the target and the id)', list)
    .option('--regression-columns <a,b>', 'regression columns (default: the clustering columns)', list)
    .option('--shared-coefficients <a,b>', 'regression columns whose slopes are common to every cluster (the intercept and other slopes stay per cluster)', list)
    .option('--categorical <a,b>', 'read these columns as categories (a clustering or regression column whose values are not numbers is one without this)', list)
    .addOption(new Option('--family <family>', `response family (default: ${DEFAULTS.family})`).choices(FAMILY_NAMES))
    .option('--offset <column>', 'a column added to the linear predictor (poisson)')
    .option('--exposure <column>', 'a column of positive exposures; its logarithm is the offset (poisson)')
    .option('--components <T>', `components, 1–200 (truncation level for stick-breaking) (default: ${DEFAULTS.components})`, wholeNumber('--components'))
    .addOption(new Option('--weights <kind>', `mixing weights (default: ${DEFAULTS.weights})`).choices(['stick-breaking', 'dirichlet']))
    .option('--no-covariate-model', 'conditional-only mixture of regressions (no model of x)')
    .option('--no-covariate-selection', 'model every clustering column per cluster (no relevance selection)')
    .option('--id <column>', 'a column naming the rows: never a covariate; assignments.csv carries it')
    .option('--delimiter <char>', 'field separator: , ; tab | (default: detected from the header line)', delimiter)
    .option('--out <dir>', 'output folder', 'clusterwise-out')
    .option('--seed <n>', `random seed (default: ${DEFAULTS.seed})`, wholeNumber('--seed'))
    .option('--workers <n>', `worker threads, 0 runs inline, at most ${MAX_THREADS} (default: one per core from 16 MiB of data, else inline)`, workers)
    .addOption(new Option('--backend <name>', 'kernel backend').choices(BACKEND_CHOICES).default('auto'))
    .option('--assign', 'also write per-row assignments (file, line, cluster, probability) to OUT/assignments.csv')
    .option('--config <file>', 'a model.json with further settings (target, columns, priors, schedule); flags win')
    .action(async (files: string[], o) => {
      checkInputFiles(files);
      const fromFile = o.config ? await readConfigFile(o.config) : undefined;
      if (o.target === undefined && fromFile?.target === undefined)
        throw new UserError(`--target is required: name the response column${o.config ? ` (or set "target" in ${o.config})` : ' (or give a --config file with "target")'}`);
      const config = parseConfigLayers([
        ...(fromFile ? [{ source: o.config as string, values: fromFile }] : []),
        {
          source: 'command line',
          values: {
            target: o.target,
            columns: o.columns,
            regressionColumns: o.regressionColumns,
            sharedCoefficients: o.sharedCoefficients,
            categorical: o.categorical,
            family: o.family,
            offset: o.offset,
            exposure: o.exposure,
            components: o.components,
            weights: o.weights,
            id: o.id,
            delimiter: o.delimiter,
            ...(o.covariateModel === false ? { covariateModel: false } : {}),
            ...(o.covariateSelection === false ? { covariateSelection: false } : {}),
            seed: o.seed,
            ...(o.assign ? { assignments: true } : {}),
          },
        },
      ]);
      const release = await lockOutput(o.out);
      const progress = progressPrinter(process.stderr, config.schedule);
      const started = Date.now();
      try {
        const result = await fitLocal({
          files, config, outDir: o.out, workers: o.workers, backend: o.backend,
          onPhase: (p) => progress.phase(p),
          onProgress: (p) => progress.update(p),
        });
        progress.stop();
        const p = result.posterior;
        if (result.assignmentsPath) await joinAssignments(result.assignmentsPath, files, p);
        console.log(
          `${p.components.length} clusters, ${p.rows} rows used, ${p.skippedRows} skipped, ELBO ${p.elbo.toFixed(2)}` +
            `${p.converged ? '' : ' (not converged: raise schedule.maxSweeps)'}; ${seconds(Date.now() - started)} with ${result.kernel}`,
        );
        console.log(clusterTable(p, process.stdout.columns ?? 120));
        const shared = p.covariateRelevance?.filter((c) => !c.relevant).map((c) => c.column) ?? [];
        if (shared.length) console.log(`no cluster information in ${shared.join(', ')}: modelled as one shared Gaussian, not per cluster (--no-covariate-selection to change)`);
        if (p.missingValues) console.log(missingSummary(p.missingValues, p.rows));
        if (p.skippedRows > 0) console.log(skippedSummary(p.skippedRows, p.rows, p.skipped as SkippedRow[]));
        console.log(`wrote ${result.posteriorPath}, ${result.reportPath}${result.assignmentsPath ? `, ${result.assignmentsPath}` : ''}`);
      } finally {
        progress.stop();
        await release();
      }
    });

  program
    .command('predict')
    .description('score rows of a CSV with a fitted posterior')
    .argument('<posterior>', 'posterior.json written by fit')
    .argument('<csv>', 'rows to score (the target column is not needed; when present, log_density is added)')
    .option('--out <file>', 'write here instead of standard output')
    .option('--interval <p>', 'add prediction_lo, prediction_hi: the central interval of probability p of the predictive distribution, e.g. 0.9 (gaussian)', probability('--interval'))
    .option('--cluster', 'cluster and cluster_probability from p(z | x, y) on rows with the target (flexmix\'s clusters(newdata)); without it, from p(z | x)')
    .option('--workers <n>', `worker threads, 0 scores in this thread, at most ${MAX_THREADS} (default: one per core from 16 MiB of data)`, workers)
    .addOption(new Option('--backend <name>', 'kernel backend').choices(BACKEND_CHOICES).default('auto'))
    .action(async (posterior: string, csv: string, o) => {
      const result = await predictFile(posterior, csv, { out: o.out, workers: o.workers, backend: o.backend, interval: o.interval, cluster: o.cluster === true });
      if (result.skipped) console.error(unscoredSummary(csv, result.skipped, result.skippedExamples));
      const density = result.logDensity;
      if (density) {
        const without = result.rows - density.rows;
        const missing = without - density.unreadable;
        const parts = [missing > 0 ? `${missing} missing` : '', density.unreadable > 0 ? `${density.unreadable} unreadable` : ''].filter(Boolean).join(', ');
        console.error(
          `${csv}: log predictive density of "${density.column}" ${density.total.toFixed(3)} over ${density.rows} ${density.rows === 1 ? 'row' : 'rows'} (${(density.total / Math.max(1, density.rows)).toFixed(4)} per row)` +
            (without > 0 ? `; ${without} ${without === 1 ? 'row' : 'rows'} without a readable "${density.column}" (${parts}) ${without === 1 ? 'has' : 'have'} no log_density${density.unreadable > 0 ? ', e.g.:' : ''}` : ''),
        );
        if (density.unreadable > 0) console.error(citedAndMore(density.unreadableExamples, density.unreadable).join('\n'));
      }
      else if (o.cluster) console.error(`${csv}: no target column, so --cluster gives clusters from p(z | x)`);
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
      .option('--request <id>', 'names this submission: after a failure, submit again with the same id to resume what it left (default: a new id, printed first)')
      .addOption(new Option('--backend <name>', 'kernel backend for the initialization').choices(BACKEND_CHOICES).default('auto')),
  ).action(async (dataset: string, o) => {
    const { submit } = await import('./aws.js');
    const overrides = o.config ? await readConfigFile(o.config) : {};
    // Printed before planning, so that a submission cut off mid-planning can be resumed rather
    // than wait out the planning timeout (lib/pipeline/ingest.ts requestRefit).
    const request: string = o.request ?? randomUUID();
    if (!o.request) console.error(`request ${request} (after a failure: clusterwise submit ${dataset} --request ${request} …)`);
    console.log(await submit({ ...o, dataset, overrides, request }));
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

const fmt = (v: number) => Number(v.toPrecision(4)).toString();

/**
 * The clusters as a plain-text table (data units; at most 6 columns of x and of coefficients
 * shown), or, when that table is wider than `width` characters, one block per cluster with every
 * column, wrapped to the width.
 */
export function clusterTable(p: PosteriorDocument, width = 120): string {
  const noise = p.components.some((c) => c.noiseSd !== undefined);
  const levels = p.components.some((c) => c.categories !== undefined);
  const few = (names: string[], values: number[]) =>
    values.slice(0, 6).map((v, i) => `${names[i]}=${fmt(v)}`).join(' ') + (values.length > 6 ? ' …' : '');
  const rows = p.components.map((c, i) => [
    String(i),
    fmt(c.weight),
    fmt(c.size),
    ...(p.covariateModel ? [few(p.columns, c.mean ?? [])] : []),
    fmt(c.intercept),
    few(ownRegressionColumns(p).map((o) => o.column), ownRegressionColumns(p).map((o) => c.coefficients[o.j])),
    ...(noise ? [fmt(c.noiseSd ?? NaN)] : []),
    ...(levels ? [likelyLevels(c).slice(0, 6).join(' ') + (likelyLevels(c).length > 6 ? ' …' : '')] : []),
  ]);
  const head = ['cluster', 'weight', 'size', ...(p.covariateModel ? ['mean'] : []), 'intercept', 'coefficients', ...(noise ? ['noise sd'] : []), ...(levels ? ['likely levels'] : [])];
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const table = [head, ...rows].map((r) => r.map((v, j) => v.padEnd(widths[j])).join('  ').trimEnd());
  // Shared slopes are one vector for every cluster: one line, after the clusters.
  const shared = p.shared ? `\nshared slopes (every cluster): ${p.shared.columns.map((name, j) => `${name}=${fmt(p.shared!.coefficients[j])}`).join(' ')}` : '';
  // A class label's several regressions (multinomial) do not fit one row: one block per cluster.
  const classes = p.components.some((c) => c.classes);
  if (!classes && Math.max(...table.map((line) => line.length)) <= width) return table.join('\n') + shared;
  return p.components.map((c, i) => clusterBlock(p, c, i, width)).join('\n\n') + shared;
}

/** One cluster, vertically: a line per quantity, name=value pairs wrapped under each other. */
function clusterBlock(p: PosteriorDocument, c: PosteriorDocument['components'][number], i: number, width: number): string {
  const wrap = (label: string, pairs: string[]) => {
    const lines: string[] = [];
    let line = `  ${label.padEnd(13)}`;
    for (const pair of pairs) {
      if (line.trim().length > label.length && line.length + pair.length + 1 > width) {
        lines.push(line.trimEnd());
        line = ' '.repeat(15);
      }
      line += `${pair} `;
    }
    return [...lines, line.trimEnd()].join('\n');
  };
  const pairs = (names: string[], values: number[]) => values.map((v, j) => `${names[j]}=${fmt(v)}`);
  return [
    `cluster ${i}: weight ${fmt(c.weight)}, size ${fmt(c.size)}${c.noiseSd !== undefined ? `, noise sd ${fmt(c.noiseSd)}` : ''}`,
    ...(p.covariateModel ? [wrap('mean', pairs(p.columns, c.mean ?? []))] : []),
    ...(c.classes
      ? c.classes.map((head) =>
          wrap(`${head.class} vs ${p.state.plan.select[p.state.plan.ySlot].levels![0]}`.padEnd(12) + ' ', [
            `intercept=${fmt(head.intercept)}`,
            ...pairs(ownRegressionColumns(p).map((o) => o.column), ownRegressionColumns(p).map((o) => head.coefficients[o.j])),
          ]),
        )
      : [
          wrap('intercept', [fmt(c.intercept)]),
          wrap('coefficients', pairs(ownRegressionColumns(p).map((o) => o.column), ownRegressionColumns(p).map((o) => c.coefficients[o.j]))),
        ]),
    ...(c.categories ? [wrap('levels', likelyLevels(c))] : []),
  ].join('\n');
}

/** Each categorical clustering column's most probable level in the cluster, with its probability: `color=red(0.8)`. */
function likelyLevels(c: PosteriorDocument['components'][number]): string[] {
  return Object.entries(c.categories ?? {}).map(([column, levels]) => {
    const [level, p] = Object.entries(levels).reduce((best, e) => (e[1] > best[1] ? e : best));
    return `${column}=${level}(${fmt(p)})`;
  });
}

/** The skipped rows for the terminal: how many, and the first few with file, line, column and reason. */
export function skippedSummary(skipped: number, used: number, examples: SkippedRow[], show = 5): string {
  const share = ((100 * skipped) / Math.max(1, skipped + used)).toPrecision(2);
  const lines = [`${skipped} of ${skipped + used} rows skipped (${share}%)${examples.length ? ', e.g.' : ''}:`];
  lines.push(...cited(examples, show));
  if (skipped > show) lines.push(`  … (${Math.min(examples.length, 50)} listed in posterior.json and report.html)`);
  return lines.join('\n');
}

/** The first `show` skipped rows, one indented line each (file:line: column: why). */
const cited = (examples: SkippedRow[], show: number) => examples.slice(0, show).map((example) => `  ${formatSkipped(example)}`);

/** Rows predict left unscored, for the terminal: how many, and the first few by file, line and column. */
export function unscoredSummary(csv: string, skipped: number, examples: SkippedRow[], show = 5): string {
  const lines = [`${csv}: ${skipped} ${skipped === 1 ? 'row' : 'rows'} could not be scored; their prediction cells are empty${examples.length ? ', e.g.' : ''}:`];
  return [...lines, ...citedAndMore(examples, skipped, show)].join('\n');
}

/** The first `show` of `count` rows, one indented line each, and how many more there are. */
function citedAndMore(examples: SkippedRow[], count: number, show = 5): string[] {
  return [...cited(examples, show), ...(count > show ? [`  … and ${count - Math.min(show, examples.length)} more`] : [])];
}

/** The marginalized missing values for the terminal: per column, how many of the used rows lack it (docs/model.md §18). */
export function missingSummary(missing: Record<string, number>, rows: number): string {
  const columns = Object.entries(missing).map(([column, count]) => `${column} ${count} (${((100 * count) / Math.max(1, rows)).toPrecision(2)}%)`);
  return `missing values integrated out, not skipped: ${columns.join(', ')}`;
}

/** Every input file exists and is named once (two names of one file would fit its rows twice). */
function checkInputFiles(files: string[]): void {
  const seen = new Map<string, string>();
  for (const f of files) {
    if (!existsSync(f)) throw new UserError(`${f}: file not found`);
    const real = realpathSync(f);
    const first = seen.get(real);
    if (first !== undefined) throw new UserError(`${f}: given twice${first === f ? '' : ` (also as ${first})`}; each file is fitted once, name it once`);
    seen.set(real, f);
  }
}

/** A bad command line or input file, said without a stack trace. */
export class UserError extends ClusterwiseError {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** A --config file's settings: a JSON object (checked against the schema with the other settings). */
async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(file, 'utf8').catch(() => {
    throw new UserError(`${file}: file not found`);
  });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UserError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError(`${file}: invalid model configuration: must be a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
  return value as Record<string, unknown>;
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
