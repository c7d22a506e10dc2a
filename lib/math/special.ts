/** Special functions: stdlib's digamma and ln Γ (accurate to a few ulp), and what PRML builds on them. */
import digammaImpl from '@stdlib/math-base-special-digamma';
import gammalnImpl from '@stdlib/math-base-special-gammaln';

export const digamma: (x: number) => number = digammaImpl;
export const lnGamma: (x: number) => number = gammalnImpl;

export const LN_2PI = Math.log(2 * Math.PI);

/** ln Γ_D(a), the multivariate gamma function: D(D−1)/4 ln π + Σ_{i=1..D} ln Γ(a + (1 − i)/2). */
export function lnMultiGamma(a: number, d: number): number {
  let s = (d * (d - 1) * Math.log(Math.PI)) / 4;
  for (let i = 1; i <= d; i++) s += lnGamma(a + (1 - i) / 2);
  return s;
}

/** ψ_D(a) = Σ_{i=1..D} ψ(a + (1 − i)/2), the derivative of ln Γ_D. */
export function multiDigamma(a: number, d: number): number {
  let s = 0;
  for (let i = 1; i <= d; i++) s += digamma(a + (1 - i) / 2);
  return s;
}

/** ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b). */
export function lnBeta(a: number, b: number): number {
  return lnGamma(a) + lnGamma(b) - lnGamma(a + b);
}

/** KL(Gamma(a, b) ‖ Gamma(a0, b0)), rate parametrization. */
export function klGamma(a: number, b: number, a0: number, b0: number): number {
  return (a - a0) * digamma(a) - lnGamma(a) + lnGamma(a0) + a0 * (Math.log(b) - Math.log(b0)) + a * ((b0 - b) / b);
}

/** ln σ(x) = −ln(1 + e^{−x}), stable for large |x|. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/** Jaakkola–Jordan λ(ξ) = tanh(ξ/2) / (4ξ), with its limit 1/8 at ξ = 0 (PRML 10.150). */
export function jjLambda(xi: number): number {
  const a = Math.abs(xi);
  if (a < 1e-6) return 0.125 - (a * a) / 96;
  return Math.tanh(a / 2) / (4 * a);
}
