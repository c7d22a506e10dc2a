/**
 * Small dense float64 linear algebra on row-major Float64Array matrices.
 *
 * The global parameters are T small D×D and P×P matrices updated a few hundred times per run;
 * plain loops over Float64Array are exact to float64, allocation-free where it matters, and faster
 * at this size than a general matrix library's object model. TensorFlow.js has no float64, so this
 * is also the precision oracle for the float32 kernel.
 */
import { ClusterwiseError } from '../errors.js';

/** Raised when a matrix that must be symmetric positive-definite is not: permanent (the same numbers fail again). */
export class NotPositiveDefiniteError extends ClusterwiseError {
  constructor(readonly what: string) {
    super(
      `${what} is not positive-definite; the data may have constant or collinear columns ` +
        '(drop them) or values on wildly different scales',
    );
    this.name = 'NotPositiveDefiniteError';
  }
}

/**
 * Cholesky factor L (lower triangular, row-major n×n) with A = L Lᵀ.
 * Reads only the lower triangle of A. Throws NotPositiveDefiniteError naming `what`.
 */
export function cholesky(a: Float64Array, n: number, what = 'matrix', out = new Float64Array(n * n)): Float64Array {
  out.fill(0);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = a[i * n + j];
      for (let k = 0; k < j; k++) sum -= out[i * n + k] * out[j * n + k];
      if (i === j) {
        if (!(sum > 0)) throw new NotPositiveDefiniteError(what);
        out[i * n + i] = Math.sqrt(sum);
      } else {
        out[i * n + j] = sum / out[j * n + j];
      }
    }
  }
  return out;
}

/** ln|A| from its Cholesky factor: 2 Σ ln L_ii. */
export function logDetFromCholesky(l: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.log(l[i * n + i]);
  return 2 * s;
}

/** Solve L z = b in place (forward substitution), L lower triangular. */
export function forwardSubstitute(l: Float64Array, n: number, b: Float64Array): Float64Array {
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[i * n + k] * b[k];
    b[i] = s / l[i * n + i];
  }
  return b;
}

/** Solve Lᵀ z = b in place (back substitution), L lower triangular. */
export function backSubstitute(l: Float64Array, n: number, b: Float64Array): Float64Array {
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    for (let k = i + 1; k < n; k++) s -= l[k * n + i] * b[k];
    b[i] = s / l[i * n + i];
  }
  return b;
}

/** A⁻¹ for SPD A given its Cholesky factor L. */
export function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  const e = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    e.fill(0);
    e[j] = 1;
    backSubstitute(l, n, forwardSubstitute(l, n, e));
    for (let i = 0; i < n; i++) inv[i * n + j] = e[i];
  }
  return inv;
}

/** Quadratic form xᵀ A y for row-major n×n A. */
export function quadraticForm(a: Float64Array, n: number, x: ArrayLike<number>, y: ArrayLike<number> = x): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    let row = 0;
    for (let j = 0; j < n; j++) row += a[i * n + j] * y[j];
    s += x[i] * row;
  }
  return s;
}

/** tr(A B) for row-major n×n matrices, A symmetric or not: Σ_ij A_ij B_ji. */
export function traceOfProduct(a: Float64Array, b: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s += a[i * n + j] * b[j * n + i];
  return s;
}

/** L Lᵀ (n × n, row-major, symmetric) of the lower-triangular L at l[at …] (a Cholesky factor's matrix). */
export function lowerProduct(l: Float64Array, n: number, at = 0, out: Float64Array = new Float64Array(n * n)): Float64Array {
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let q = 0; q <= j; q++) s += l[at + i * n + q] * l[at + j * n + q];
      out[i * n + j] = out[j * n + i] = s;
    }
  return out;
}

/** A x for row-major n×n A. */
export function matVec(a: Float64Array, n: number, x: ArrayLike<number>): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += a[i * n + j] * x[j];
    out[i] = s;
  }
  return out;
}

/** Symmetrize in place: A ← (A + Aᵀ)/2, to cancel rounding drift in accumulated sums. */
export function symmetrize(a: Float64Array, n: number): Float64Array {
  for (let i = 0; i < n; i++)
    for (let j = 0; j < i; j++) {
      const v = 0.5 * (a[i * n + j] + a[j * n + i]);
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
  return a;
}
