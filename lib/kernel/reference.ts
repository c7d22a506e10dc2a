/**
 * The float64 reference local step: plain loops, one row at a time, exactly as written in
 * DESIGN.md §2 / posterior.ts#LocalParams. It is the oracle the fast kernel is tested against and
 * the fallback when TensorFlow.js is unavailable.
 */
import { jjLambda, logSigmoid } from '../math/special.js';
import type { LocalParams } from '../model/posterior.js';
import { layoutOf } from '../model/spec.js';
import type { Batch, Kernel, LocalStepOptions, LocalStepResult } from './types.js';

export const referenceKernel: Kernel<Batch> = {
  name: 'reference',
  prepare: (batch) => batch,
  release: () => {},
  localStep(params: LocalParams, batch: Batch, options: LocalStepOptions = {}): LocalStepResult {
    const { spec } = params;
    const { T, D, P } = spec;
    const gaussian = spec.family === 'gaussian';
    const layout = layoutOf(spec);
    const stats = new Float64Array(layout.length);
    const resp = options.responsibilities ? new Float64Array(batch.n * T) : undefined;
    const logRho = new Float64Array(T);
    const weightUU = new Float64Array(T); // r (gaussian) or 2 r λ(ξ) (bernoulli)
    const jj = new Float64Array(T);
    const centred = new Float64Array(D);
    let logLik = 0;

    for (let n = 0; n < batch.n; n++) {
      const x = batch.x.subarray(n * D, (n + 1) * D);
      const u = batch.u.subarray(n * P, (n + 1) * P);
      const y = batch.y[n];
      let max = -Infinity;
      for (let k = 0; k < T; k++) {
        let lr = params.logWeight[k];
        if (spec.covariateModel) {
          // ‖(x − m_k)ᵀ F_k‖² = ν_k (x − m_k)ᵀ W_k (x − m_k)
          for (let i = 0; i < D; i++) centred[i] = x[i] - params.mean[k * D + i];
          const f = params.precisionFactor.subarray(k * D * D, (k + 1) * D * D);
          let quad = 0;
          for (let j = 0; j < D; j++) {
            let z = 0;
            for (let i = j; i < D; i++) z += centred[i] * f[i * D + j]; // F lower triangular
            quad += z * z;
          }
          lr += params.covariateConst[k] - 0.5 * quad;
        }
        let pred = 0;
        for (let i = 0; i < P; i++) pred += params.coef[k * P + i] * u[i];
        const c = params.coefCovFactor.subarray(k * P * P, (k + 1) * P * P);
        let spread = 0; // uᵀ Λ_k⁻¹ u = ‖uᵀ C_k‖²
        for (let j = 0; j < P; j++) {
          let z = 0;
          for (let i = j; i < P; i++) z += u[i] * c[i * P + j];
          spread += z * z;
        }
        if (gaussian) {
          const e = y - pred;
          lr += params.responseConst[k] - 0.5 * (params.noisePrecision[k] * e * e + spread);
        } else {
          const xi = Math.sqrt(spread + pred * pred); // PRML 10.163
          jj[k] = jjLambda(xi);
          lr += logSigmoid(xi) + (y - 0.5) * pred - xi / 2; // PRML 10.152 at the optimal ξ
        }
        logRho[k] = lr;
        if (lr > max) max = lr;
      }
      let sum = 0;
      for (let k = 0; k < T; k++) sum += (logRho[k] = Math.exp(logRho[k] - max));
      logLik += max + Math.log(sum);

      for (let k = 0; k < T; k++) {
        const r = logRho[k] / sum;
        if (resp) resp[n * T + k] = r;
        if (r === 0) continue;
        stats[layout.count + k] += r;
        if (spec.covariateModel) {
          const sx = layout.sx + k * D;
          const sxx = layout.sxx + k * D * D;
          for (let i = 0; i < D; i++) {
            const rx = r * x[i];
            stats[sx + i] += rx;
            for (let j = 0; j <= i; j++) stats[sxx + i * D + j] += rx * x[j];
          }
        }
        weightUU[k] = gaussian ? r : 2 * r * jj[k];
        const yWeight = gaussian ? r * y : r * (y - 0.5);
        const suu = layout.suu + k * P * P;
        const syu = layout.syu + k * P;
        for (let i = 0; i < P; i++) {
          const wu = weightUU[k] * u[i];
          stats[syu + i] += yWeight * u[i];
          for (let j = 0; j <= i; j++) stats[suu + i * P + j] += wu * u[j];
        }
        if (gaussian) stats[layout.syy + k] += r * y * y;
      }
    }
    mirrorLowerTriangles(stats, layout.sxx, T, D);
    mirrorLowerTriangles(stats, layout.suu, T, P);
    return { stats, logLik, responsibilities: resp };
  },
};

/** Copy the accumulated lower triangle of each of `count` m×m blocks onto its upper triangle. */
export function mirrorLowerTriangles(v: Float64Array, offset: number, count: number, m: number): void {
  for (let k = 0; k < count; k++) {
    const base = offset + k * m * m;
    for (let i = 0; i < m; i++) for (let j = 0; j < i; j++) v[base + j * m + i] = v[base + i * m + j];
  }
}
