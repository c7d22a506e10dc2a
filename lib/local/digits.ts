/**
 * Numbers written as bytes straight into an output buffer, for predict's cells. The text is
 * exactly what `Number.prototype.toPrecision(p)` gives (ECMA-262 §21.1.3.5), so the output does not
 * depend on which path wrote it; building a string per cell and encoding it cost predict a fifth
 * of its time on 1M rows.
 *
 * Fast path: for 1e−6 ≤ |v| < 10^p (the range toPrecision writes without an exponent), the p
 * significant digits are n = round(|v| · 10^(p−1−e)) with e = ⌊log₁₀|v|⌋. The power of ten is exact
 * (10^k for k ≤ 22) and the product is correctly rounded, so it is within half an ulp of the exact
 * value: below 10^9 that is < 1e−7, and n is the correctly rounded one unless the fraction is
 * within 1e−6 of ½. Those rows, zero, non-finite values and exponent notation take toPrecision.
 */

const POW10 = Array.from({ length: 23 }, (_, k) => 10 ** k);
/** 10^−k as the nearest doubles; only compared against, so a value on the boundary is settled by the retry below. */
const NEG_POW10 = Array.from({ length: 8 }, (_, k) => 10 ** -k);
const DOT = 46;
const MINUS = 45;
const ZERO = 48;

/** Writes `v.toPrecision(p)` (1 ≤ p ≤ 9) into `out` at `at` as latin1; returns the position after it. */
export function writePrecision(out: Uint8Array, at: number, v: number, p: number): number {
  const a = Math.abs(v);
  if (!(a >= 1e-6 && a < POW10[p])) return writeAscii(out, at, v.toPrecision(p));
  // e = ⌊log₁₀ a⌋ by comparisons (cheaper than Math.log10 for the usual magnitudes).
  let e = 0;
  if (a >= 1) while (e < p - 1 && a >= POW10[e + 1]) e++;
  else for (e = -1; e > -6 && a < NEG_POW10[-e]; ) e--;
  let n = 0;
  for (let attempt = 0; attempt < 2; attempt++) {
    // log10 may be one off near a power of ten: n must have exactly p digits.
    const k = p - 1 - e;
    const scaled = k >= 0 ? a * POW10[k] : a / POW10[-k];
    const fraction = scaled - Math.floor(scaled);
    if (Math.abs(fraction - 0.5) < 1e-6) return writeAscii(out, at, v.toPrecision(p));
    n = Math.round(scaled);
    if (n >= POW10[p]) e++;
    else if (n < POW10[p - 1]) e--;
    else break;
  }
  if (n >= POW10[p] || n < POW10[p - 1] || e < -6 || e >= p) return writeAscii(out, at, v.toPrecision(p));
  if (v < 0) out[at++] = MINUS;
  if (e < 0) {
    out[at++] = ZERO;
    out[at++] = DOT;
    for (let i = -1; i > e; i--) out[at++] = ZERO;
    return writeDigits(out, at, n, p);
  }
  // e + 1 digits, the point, then the other p − e − 1 (no point when e = p − 1).
  if (e === p - 1) return writeDigits(out, at, n, p);
  const unit = POW10[p - 1 - e];
  const whole = Math.floor(n / unit);
  at = writeDigits(out, at, whole, e + 1);
  out[at++] = DOT;
  return writeDigits(out, at, n - whole * unit, p - 1 - e);
}

/** Writes a non-negative integer below 2^31 in decimal (or a negative one with its sign). */
export function writeInteger(out: Uint8Array, at: number, v: number): number {
  if (v < 0) {
    out[at++] = MINUS;
    v = -v;
  }
  let digits = 1;
  while (digits < 10 && v >= POW10[digits]) digits++;
  return writeDigits(out, at, v, digits);
}

/** The `count` lowest decimal digits of n (an integer below 2^31), most significant first, zero-padded. */
function writeDigits(out: Uint8Array, at: number, n: number, count: number): number {
  for (let i = count - 1; i >= 0; i--) {
    const q = (n / 10) | 0;
    out[at + i] = ZERO + (n - q * 10);
    n = q;
  }
  return at + count;
}

/** An ASCII string byte by byte (the fallback's digits, signs, "e", "Infinity", "NaN"). */
export function writeAscii(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  return at;
}
