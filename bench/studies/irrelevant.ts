/** The irrelevant-covariates draw of the studies (bench/studies/run.ts) and of test/relevance.test.ts. */
import type { Random } from '../../lib/math/random.js';

/**
 * Covariates that carry no cluster information (Wade et al. 2014's setting): two regressions,
 * half the rows each, y = ±(0.5 + x1 − x2) + e, e ~ N(0, 1.5²); the two relevant covariates x1, x2
 * ~ N(±(0.3, 0.3), I) (a weak cluster signal); 18 irrelevant covariates x3…x20 from one shared
 * Gaussian for both clusters, N(0, Σ) with unit variances and correlation 0.5 (Σ = ½ I + ½ 11ᵀ,
 * drawn as √½ (ε + ε_0 1), ε ~ N(0, I), ε_0 ~ N(0, 1)). `bayes` is the Bayes rule's labels
 * (argmax_k p(z = k | x, y) with the true parameters): the ceiling of any fit's ARI.
 */
export const IRRELEVANT = { shift: 0.3, coefficients: [[1, -1, 0.5], [-1, 1, -0.5]], noiseSd: 1.5, irrelevant: 18, correlation: 0.5 };
export function irrelevantDraw(n: number, random: Random) {
  const { shift, coefficients, noiseSd, irrelevant, correlation } = IRRELEVANT;
  const header = [...Array.from({ length: 2 + irrelevant }, (_, i) => `x${i + 1}`), 'y'];
  const d = { header, rows: [] as number[][], labels: [] as number[], coefficients, bayes: [] as number[] };
  const logDensity = (k: number, x1: number, x2: number, y: number) => {
    const m = k === 0 ? shift : -shift;
    const [b1, b2, b0] = coefficients[k];
    return -0.5 * ((x1 - m) ** 2 + (x2 - m) ** 2) - 0.5 * ((y - b0 - b1 * x1 - b2 * x2) / noiseSd) ** 2;
  };
  for (let i = 0; i < n; i++) {
    const k = i % 2;
    const m = k === 0 ? shift : -shift;
    const x1 = m + random.normal();
    const x2 = m + random.normal();
    const common = random.normal();
    const noise = Array.from({ length: irrelevant }, () => Math.sqrt(1 - correlation) * random.normal() + Math.sqrt(correlation) * common);
    const [b1, b2, b0] = coefficients[k];
    const y = b0 + b1 * x1 + b2 * x2 + noiseSd * random.normal();
    d.rows.push([x1, x2, ...noise, y]);
    d.labels.push(k);
    d.bayes.push(logDensity(1, x1, x2, y) > logDensity(0, x1, x2, y) ? 1 : 0);
  }
  return d;
}
