/**
 * One pipeline role (ingest, planner, worker, aggregator) as a Lambda function: its thin handler in
 * functions/<role>.ts bundled locally by esbuild into one ESM file, with its own log group.
 */
import * as path from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export type PipelineRole = 'ingest' | 'planner' | 'worker' | 'aggregator';

/** Node.js runtime of every role; the bundle target follows it. */
export const RUNTIME = Runtime.NODEJS_22_X;
const ESBUILD_TARGET = 'node22';

/**
 * Prepended to each bundle. CommonJS dependencies call `require` (and the Emscripten glue of the
 * TensorFlow.js wasm backend reads `__dirname`), neither of which exists in an ES module. The
 * imports are aliased, and `__dirname`/`__filename` reach the code through esbuild `define`
 * (which replaces only free references), so that a bundled module declaring its own
 * `__dirname` or `dirname` cannot collide with the banner. esbuild renames a bundled module's own
 * top-level `require`, so that one name can stay as it is.
 */
const BANNER = [
  "import { createRequire as __cwCreateRequire } from 'node:module';",
  "import { fileURLToPath as __cwFileURLToPath } from 'node:url';",
  "import { dirname as __cwPathDirname } from 'node:path';",
  'const require = __cwCreateRequire(import.meta.url);',
  'const __cwFilename = __cwFileURLToPath(import.meta.url);',
  'const __cwDirname = __cwPathDirname(__cwFilename);',
].join(' ');

/**
 * How every role is bundled (esbuild options, as NodejsFunction passes them on). bench/cold-start.ts
 * builds the same bundles to time their load.
 */
export const BUNDLING = {
  format: 'esm',
  mainFields: ['module', 'main'],
  banner: BANNER,
  define: { __dirname: '__cwDirname', __filename: '__cwFilename' },
  minify: true,
  target: ESBUILD_TARGET,
  // The runtime ships AWS SDK v3; tfjs-node is an optional native speed-up for local runs
  // (x64 binaries, far too large) and is never shipped: the kernel falls back to wasm.
  externalModules: ['@aws-sdk/*', '@tensorflow/tfjs-node'],
} as const;

export interface RoleFunctionProps {
  /** Which role; names the entry `functions/<role>.ts` and the Powertools service. */
  readonly role: PipelineRole;
  /** Repository root: holds `functions/`, `node_modules/` and `package-lock.json`. */
  readonly projectRoot: string;
  /** @default 1024 */
  readonly memorySize?: number;
  /** @default Duration.minutes(1) */
  readonly timeout?: Duration;
  /** Extra environment variables (LOG_LEVEL and POWERTOOLS_SERVICE_NAME are set here). @default {} */
  readonly environment?: Record<string, string>;
  /**
   * Copy the TensorFlow.js wasm binaries (`@tensorflow/tfjs-backend-wasm/dist/*.wasm`) next to
   * the bundle, where the kernel finds them via `setWasmPaths(LAMBDA_TASK_ROOT)`.
   * @default false
   */
  readonly shipWasm?: boolean;
  /** @default "INFO" */
  readonly logLevel?: string;
  /** How long the log group keeps events. @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /** Removal policy of the log group. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Ship the bundle's source map and start Node with `--enable-source-maps`, so stack traces in
   * the logs name the TypeScript files. Node parses the map when it loads the bundle: about 0.2 s
   * more per cold start (docs/deploy.md §1). @default false
   */
  readonly sourceMaps?: boolean;
}

export class RoleFunction extends Construct {
  public readonly function: NodejsFunction;
  public readonly logGroup: LogGroup;
  public readonly pipelineRole: PipelineRole;

  constructor(scope: Construct, id: string, props: RoleFunctionProps) {
    super(scope, id);
    this.pipelineRole = props.role;
    const shipWasm = props.shipWasm ?? false;
    const sourceMaps = props.sourceMaps ?? false;

    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });

    this.function = new NodejsFunction(this, 'Function', {
      entry: path.join(props.projectRoot, 'functions', `${props.role}.ts`),
      handler: 'handler',
      projectRoot: props.projectRoot,
      depsLockFilePath: path.join(props.projectRoot, 'package-lock.json'),
      runtime: RUNTIME,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 1024,
      timeout: props.timeout ?? Duration.minutes(1),
      logGroup: this.logGroup,
      description: `clusterwise ${props.role}`,
      environment: {
        ...props.environment,
        POWERTOOLS_SERVICE_NAME: `clusterwise-${props.role}`,
        LOG_LEVEL: props.logLevel ?? 'INFO',
        ...(sourceMaps ? { NODE_OPTIONS: '--enable-source-maps' } : {}),
      },
      bundling: {
        ...BUNDLING,
        format: OutputFormat.ESM,
        mainFields: [...BUNDLING.mainFields],
        define: { ...BUNDLING.define },
        externalModules: [...BUNDLING.externalModules],
        sourceMap: sourceMaps,
        forceDockerBundling: false,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string): string[] =>
            shipWasm
              ? [`cp "${inputDir}"/node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "${outputDir}"/`]
              : [],
        },
      },
    });
  }
}
