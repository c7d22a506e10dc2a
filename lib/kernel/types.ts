/** One interface for the per-row local step, implemented by a float64 reference and a TensorFlow.js kernel. */
import type { LocalParams } from '../model/posterior.js';

/** A batch of standardized rows. */
export interface Batch<A extends Float64Array | Float32Array = Float64Array> {
  n: number;
  /** Clustering covariates, shape (n, D); empty in conditional-only mode. */
  x: A;
  /** Regression inputs u = [r; 1], shape (n, P), intercept last. */
  u: A;
  /**
   * The categorical clustering covariates' codes, shape (n, J): column j's level plus the levels of
   * the columns before it (lib/model/covariates/categorical.ts); absent when the model has none.
   */
  categories?: Int32Array;
  /** Target, shape (n): standardized (gaussian) or as read (0/1 for bernoulli, counts for poisson). */
  y: A;
  /** Offset o of the linear predictor η = θᵀu + o, shape (n), for a family that takes one (poisson's ln exposure); absent: 0. */
  offset?: A;
  /**
   * Rows each row of the batch stands for (a frequency weight of the whole batch); kernels ignore
   * it and the caller scales what the local step returns (lib/pipeline/worker.ts). @default 1
   */
  weight?: number;
}

export interface LocalStepResult {
  /** Sufficient statistics S over the batch, float64, in the layout of model/spec.ts. */
  stats: Float64Array;
  /** Σ_n logsumexp_k ln ρ_nk: the batch's share of the ELBO before the global KL terms. */
  logLik: number;
  /** r_nk, shape (n, T), when asked for. */
  responsibilities?: Float64Array;
}

export interface LocalStepOptions {
  responsibilities?: boolean;
}

export interface Kernel<Prepared = unknown> {
  /** "reference", or "tfjs-<backend>". */
  readonly name: string;
  /**
   * Convert a batch once into the kernel's own form (tensors, say); reused across local steps.
   * Kernels only read a batch's values, so float32 rows (a shard's binary copy) go in as they are:
   * widened on read, they are the same numbers a float64 copy would hold.
   */
  prepare(batch: Batch | Batch<Float32Array>): Prepared;
  /** The local step (docs/model.md §4): responsibilities given λ, and the statistics they imply. */
  localStep(params: LocalParams, prepared: Prepared, options?: LocalStepOptions): LocalStepResult;
  /** Free what prepare allocated. */
  release(prepared: Prepared): void;
}
