/**
 * Choosing and loading the local-step kernel (docs/model.md §9).
 *
 * Order for 'auto': `tensorflow` (the native backend of @tensorflow/tfjs-node, an optional
 * dependency, used only if it is installed and loads), else `wasm`
 * (@tensorflow/tfjs-backend-wasm; XNNPACK, SIMD when the runtime has it, single-threaded in
 * Node), else `cpu` (@tensorflow/tfjs-backend-cpu, plain JavaScript), else — only if TensorFlow.js
 * itself cannot load — the float64 `reference`.
 *
 * Each backend is initialized once per process (the promise is kept, failures included); later
 * calls return at once. TensorFlow.js has a single active backend per process: loadKernel makes
 * the loaded one active, and each tfjs kernel re-activates its own backend on every call
 * (tfjs.ts#activateBackend), so kernels on different backends can coexist (tests, benchmarks).
 *
 * The wasm binaries: in Node the backend reads them from its own package folder. A bundle (AWS
 * Lambda) must ship them next to it: when LAMBDA_TASK_ROOT is set and holds the binary the runtime
 * needs, they are read from there (if it does not, node_modules was deployed and the package's
 * folder is used). CLUSTERWISE_WASM_DIR, when set, overrides both, and a folder without the binary
 * is then a clear error before TensorFlow.js is asked, not an abort inside it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterwiseError } from '../errors.js';
import { referenceKernel } from './reference.js';
import type { PreparedTensors, TfjsBackendName } from './tfjs.js';
import type { Kernel } from './types.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu' | 'reference';

export const BACKENDS: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu', 'reference'];
const AUTO_ORDER: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu', 'reference'];

/** Not a literal, so neither TypeScript nor a bundler tries to resolve the optional package. */
const TFJS_NODE: string = '@tensorflow/tfjs-node';

/** What the WebAssembly backend runs with. */
export interface WasmFeatures {
  /** The SIMD build of the binary is used (WASM_HAS_SIMD_SUPPORT). */
  simd: boolean;
  /** The multithreaded build is used (WASM_HAS_MULTITHREAD_SUPPORT; never in Node). */
  threads: boolean;
}

/** How the kernel was chosen. */
export interface KernelReport {
  backend: BackendName;
  /** Backends tried before this one ('auto'), each with the reason it was passed over. */
  skipped: { backend: BackendName; reason: string }[];
  /** For `wasm`: the build in use, the binary's file name, and the folder it was read from (null: the package's own). */
  wasm?: WasmFeatures & { binary: string; directory: string | null };
}

/** A kernel, and which backend it runs on and why. */
export type LoadedKernel = Kernel & { readonly backend: BackendName; readonly report: KernelReport };

/** An explicitly requested backend that cannot be loaded; `reason` says why. */
export class BackendUnavailableError extends ClusterwiseError {
  /** The backend asked for; 'auto' when none of the automatic choices could load. */
  readonly backend: BackendName | 'auto';
  readonly reason: string;
  constructor(backend: BackendName | 'auto', reason: string, options?: { cause?: unknown }) {
    super(`kernel backend '${backend}' is unavailable: ${reason}`, options);
    this.name = 'BackendUnavailableError';
    this.backend = backend;
    this.reason = reason;
  }
}

interface BackendState {
  wasm?: KernelReport['wasm'];
}

const initialized = new Map<TfjsBackendName, Promise<BackendState>>();

/**
 * The kernel for `preference` ('auto' by default, see the module comment). An explicit backend
 * that cannot load rejects with a BackendUnavailableError naming it and the reason.
 */
export async function loadKernel(preference: BackendName | 'auto' = 'auto'): Promise<LoadedKernel> {
  if (preference !== 'auto' && !BACKENDS.includes(preference))
    throw new RangeError(`loadKernel: unknown backend '${String(preference)}'; expected auto, ${BACKENDS.join(', ')}`);
  if (preference !== 'auto') return load(preference, []);
  const skipped: KernelReport['skipped'] = [];
  for (const backend of AUTO_ORDER) {
    try {
      return await load(backend, skipped);
    } catch (error) {
      skipped.push({ backend, reason: error instanceof BackendUnavailableError ? error.reason : String(error) });
    }
  }
  throw new BackendUnavailableError('auto', `none could be loaded: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
}

async function load(backend: BackendName, skipped: KernelReport['skipped']): Promise<LoadedKernel> {
  if (backend === 'reference') return withReport(referenceKernel, { backend, skipped: [...skipped] });
  const state = await initialize(backend);
  const { activateBackend, createTfjsKernel } = await import('./tfjs.js');
  activateBackend(backend);
  const kernel = createTfjsKernel(backend) as Kernel<PreparedTensors>;
  return withReport(kernel as Kernel, { backend, skipped: [...skipped], ...(state.wasm ? { wasm: state.wasm } : {}) });
}

function withReport(kernel: Kernel, report: KernelReport): LoadedKernel {
  return {
    name: kernel.name,
    prepare: kernel.prepare,
    localStep: kernel.localStep,
    release: kernel.release,
    backend: report.backend,
    report,
  };
}

/** Initialize a TensorFlow.js backend once per process (module comment). */
function initialize(backend: TfjsBackendName): Promise<BackendState> {
  let pending = initialized.get(backend);
  if (!pending) {
    pending = backend === 'tensorflow' ? initTensorflow() : backend === 'wasm' ? initWasm() : initCpu();
    pending.catch(() => {}); // a failure is kept and re-reported on the next request
    initialized.set(backend, pending);
  }
  return pending;
}

async function initTensorflow(): Promise<BackendState> {
  const tf = await import('@tensorflow/tfjs-core');
  try {
    await import(TFJS_NODE);
  } catch (error) {
    const notInstalled =
      (error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes(TFJS_NODE);
    throw new BackendUnavailableError(
      'tensorflow',
      notInstalled
        ? `${TFJS_NODE} is not installed (it is an optional dependency whose install downloads libtensorflow); ` +
            `install it, or choose 'wasm', 'cpu' or 'auto'`
        : `${TFJS_NODE} failed to load: ${(error as Error).message ?? String(error)}`,
      { cause: error },
    );
  }
  if (tf.findBackendFactory('tensorflow') == null)
    throw new BackendUnavailableError(
      'tensorflow',
      `${TFJS_NODE} loaded but registered no 'tensorflow' backend with this copy of @tensorflow/tfjs-core ` +
        `(${tf.version_core}); its TensorFlow.js version must match`,
    );
  await setBackendOrThrow(tf, 'tensorflow', 'the native TensorFlow backend failed to initialize');
  return {};
}

async function initWasm(): Promise<BackendState> {
  const tf = await import('@tensorflow/tfjs-core');
  let wasmModule: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasmModule = await import('@tensorflow/tfjs-backend-wasm');
  } catch (error) {
    throw new BackendUnavailableError('wasm', `@tensorflow/tfjs-backend-wasm failed to load: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const features = await wasmFeatures();
  const binary = features.simd
    ? features.threads
      ? 'tfjs-backend-wasm-threaded-simd.wasm'
      : 'tfjs-backend-wasm-simd.wasm'
    : 'tfjs-backend-wasm.wasm';
  const isUrl = (dir: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(dir);
  const override = process.env.CLUSTERWISE_WASM_DIR;
  const lambdaRoot = process.env.LAMBDA_TASK_ROOT;
  let directory: string | null = null;
  if (override) {
    if (!isUrl(override) && !existsSync(join(override, binary)))
      throw new BackendUnavailableError(
        'wasm',
        `${binary} is not in ${override} (CLUSTERWISE_WASM_DIR); copy the .wasm files of ` +
          `node_modules/@tensorflow/tfjs-backend-wasm/dist there, or unset it`,
      );
    directory = override;
  } else if (lambdaRoot && (isUrl(lambdaRoot) || existsSync(join(lambdaRoot, binary)))) {
    directory = lambdaRoot; // a bundle with the binaries beside it; else (node_modules deployed) the package's own
  }
  if (directory) {
    try {
      wasmModule.setWasmPaths(directory.endsWith('/') ? directory : `${directory}/`);
    } catch (error) {
      throw new BackendUnavailableError('wasm', (error as Error).message, { cause: error });
    }
  }
  await setBackendOrThrow(
    tf,
    'wasm',
    `the WebAssembly module ${binary} (from ${directory ?? 'the package folder'}) failed to initialize; ` +
      `a bundle needs the .wasm files of @tensorflow/tfjs-backend-wasm/dist beside it, or CLUSTERWISE_WASM_DIR set to their folder`,
  );
  return { wasm: { ...features, binary, directory } };
}

async function initCpu(): Promise<BackendState> {
  const tf = await import('@tensorflow/tfjs-core');
  try {
    await import('@tensorflow/tfjs-backend-cpu');
  } catch (error) {
    throw new BackendUnavailableError('cpu', `@tensorflow/tfjs-backend-cpu failed to load: ${(error as Error).message}`, {
      cause: error,
    });
  }
  // PROD silences TensorFlow.js's console notes, among them the cpu backend's "install our node
  // backend" banner, printed by every thread that first writes a tensor.
  tf.env().set('PROD', true);
  await setBackendOrThrow(tf, 'cpu', 'the JavaScript CPU backend failed to initialize');
  return {};
}

async function setBackendOrThrow(
  tf: typeof import('@tensorflow/tfjs-core'),
  backend: TfjsBackendName,
  failure: string,
): Promise<void> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(backend);
  } catch (error) {
    throw new BackendUnavailableError(backend, `${failure}: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
  if (!ok) throw new BackendUnavailableError(backend, failure);
}

/** Whether the wasm backend runs its SIMD and multithreaded builds here (TensorFlow.js feature flags). */
export async function wasmFeatures(): Promise<WasmFeatures> {
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-wasm'); // registers the WASM_* flags
  const [simd, threads] = await Promise.all([
    tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
    tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
  ]);
  return { simd: Boolean(simd), threads: Boolean(threads) };
}
