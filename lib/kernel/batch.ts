/** Row selections of a Batch (kernel/types.ts): a subset of its rows, and which rows have missing cells (docs/model.md §18). */
import { MISSING_CODE } from '../model/covariates/categorical.js';
import type { Batch } from './types.js';

type AnyBatch = Batch | Batch<Float32Array>;

/** The rows of `batch` at `rows`, in that order, every field copied (x, u, y, offset, categories), in the batch's precision. */
export function rowsOf<B extends AnyBatch>(batch: B, rows: ArrayLike<number>): B {
  const n = rows.length;
  const D = batch.n ? batch.x.length / batch.n : 0;
  const P = batch.n ? batch.u.length / batch.n : 0;
  const J = batch.categories && batch.n ? batch.categories.length / batch.n : 0;
  const Float = batch.y instanceof Float32Array ? Float32Array : Float64Array;
  const x = new Float(n * D);
  const u = new Float(n * P);
  const y = new Float(n);
  const offset = batch.offset ? new Float(n) : undefined;
  const categories = batch.categories ? new Int32Array(n * J) : undefined;
  for (let i = 0; i < n; i++) {
    const src = rows[i];
    x.set(batch.x.subarray(src * D, (src + 1) * D), i * D);
    u.set(batch.u.subarray(src * P, (src + 1) * P), i * P);
    y[i] = batch.y[src];
    if (offset) offset[i] = batch.offset![src];
    if (categories) categories.set(batch.categories!.subarray(src * J, (src + 1) * J), i * J);
  }
  return { ...batch, n, x, u, y, ...(offset ? { offset } : {}), ...(categories ? { categories } : {}) } as B;
}

/** Indices of the rows with a missing numeric covariate (NaN in x), ascending. */
export function rowsWithMissing(batch: AnyBatch): number[] {
  const D = batch.n ? batch.x.length / batch.n : 0;
  const rows: number[] = [];
  for (let i = 0; i < batch.n; i++)
    for (let j = 0; j < D; j++)
      if (Number.isNaN(batch.x[i * D + j])) {
        rows.push(i);
        break;
      }
  return rows;
}

/**
 * The rows with no missing covariate at all, numeric or categorical: what initialization's
 * seedings (k-means on x, hard assignments) can use. The batch itself when every row is complete.
 */
export function completeRows<B extends AnyBatch>(batch: B): B {
  const numeric = new Set(rowsWithMissing(batch));
  const J = batch.categories && batch.n ? batch.categories.length / batch.n : 0;
  const keep: number[] = [];
  for (let i = 0; i < batch.n; i++) {
    if (numeric.has(i)) continue;
    let complete = true;
    for (let j = 0; j < J; j++) if (batch.categories![i * J + j] === MISSING_CODE) complete = false;
    if (complete) keep.push(i);
  }
  return keep.length === batch.n ? batch : rowsOf(batch, keep);
}
