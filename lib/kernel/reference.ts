/**
 * The float64 reference local step: plain loops, one row at a time, exactly as written in
 * docs/model.md §4 / posterior.ts#LocalParams, the response family's terms from its `rows`
 * (lib/model/families/). It is the oracle the fast kernel is tested against and
 * the fallback when TensorFlow.js is unavailable. A row with missing numeric covariates (NaN in x)
 * takes its terms and expected statistics from MissingCells (missing.ts, docs/model.md §18).
 */
import { covariateFactorsOf } from '../model/covariates/index.js';
import { familyOf, referenceRows } from '../model/families/index.js';
import type { LocalParams } from '../model/posterior.js';
import { layoutOf } from '../model/spec.js';
import { MissingCells } from './missing.js';
import type { Batch, Kernel, LocalStepOptions, LocalStepResult } from './types.js';

export const referenceKernel: Kernel<Batch | Batch<Float32Array>> = {
  name: 'reference',
  prepare: (batch) => batch,
  release: () => {},
  localStep(params: LocalParams, batch: Batch, options: LocalStepOptions = {}): LocalStepResult {
    const { spec } = params;
    const { T, D, P } = spec;
    const family = familyOf(spec.family);
    const { logLik: responseTerm, weights: responseWeights, extra, ownPredictors } = referenceRows(family, spec);
    const local = params.response;
    const extraWidth = family.extraWidth(spec);
    const offsets = batch.offset;
    const layout = layoutOf(spec);
    const stats = new Float64Array(layout.length);
    const resp = options.responsibilities ? new Float64Array(batch.n * T) : undefined;
    const logRho = new Float64Array(T);
    const eta = new Float64Array(T); // θ_kᵀu
    const memo = new Float64Array(T); // what the family keeps from a row's term for its weights
    const weights = new Float64Array(2); // w_uu, w_u
    const centred = new Float64Array(D);
    // Categorical covariates (lib/model/covariates/): their term of ln ρ and their statistics, from the row's codes.
    const factors = covariateFactorsOf(spec);
    const codes = batch.categories;
    const J = spec.levels?.length ?? 0;
    const factorBlocks = factors.map((f) => layout.blocks.find((b) => b.name === f.block(spec)!.name)!);
    if (factors.length > 0 && !codes) throw new RangeError(`reference: the model has ${J} categorical covariates; the batch has none`);
    let logLik = 0;
    let cells: MissingCells | undefined;

    for (let n = 0; n < batch.n; n++) {
      const x = batch.x.subarray(n * D, (n + 1) * D);
      const u = batch.u.subarray(n * P, (n + 1) * P);
      const y = batch.y[n];
      const o = offsets ? offsets[n] : 0;
      const missing = spec.covariateModel && (cells ??= new MissingCells(params)).begin(x, u);
      // With a missing regression input the response term is part of the marginal one.
      const linked = missing && cells!.linked;
      let max = -Infinity;
      for (let k = 0; k < T; k++) {
        let lr = params.logWeight[k];
        if (missing) lr += cells!.term(k, y, memo);
        else if (spec.covariateModel) {
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
        for (let f = 0; f < factors.length; f++) lr += factors[f].logLik(spec, params.factors[f], k, codes!, n * J);
        // A family with its own predictors (multinomial) reads u and its own parameters instead.
        let pred = 0;
        if (!ownPredictors) {
          const ku = linked ? cells!.eu.subarray(k * P, (k + 1) * P) : u;
          for (let i = 0; i < P; i++) pred += params.coef[k * P + i] * ku[i];
        }
        eta[k] = pred; // θ_kᵀE[u] with missing inputs (the family's weights do not depend on it)
        if (!linked) {
          let spread = 0; // uᵀ Λ_k⁻¹ u = ‖uᵀ C_k‖²
          if (!ownPredictors) {
            const c = params.coefCovFactor.subarray(k * P * P, (k + 1) * P * P);
            for (let j = 0; j < P; j++) {
              let z = 0;
              for (let i = j; i < P; i++) z += u[i] * c[i * P + j];
              spread += z * z;
            }
          }
          lr += responseTerm(local, k, pred, spread, y, o, memo, u);
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
        if (missing) {
          // r E[x], r E[x xᵀ] under q(x_m | z = k)
          const sx = layout.sx + k * D;
          const sxx = layout.sxx + k * D * D;
          for (let i = 0; i < D; i++) {
            stats[sx + i] += r * cells!.ex[k * D + i];
            for (let j = 0; j <= i; j++) stats[sxx + i * D + j] += r * cells!.exx[k * D * D + i * D + j];
          }
        } else if (spec.covariateModel) {
          const sx = layout.sx + k * D;
          const sxx = layout.sxx + k * D * D;
          for (let i = 0; i < D; i++) {
            const rx = r * x[i];
            stats[sx + i] += rx;
            for (let j = 0; j <= i; j++) stats[sxx + i * D + j] += rx * x[j];
          }
        }
        for (let f = 0; f < factors.length; f++) factors[f].accumulate(spec, codes!, n * J, r, stats, factorBlocks[f].offset + k * factorBlocks[f].width);
        responseWeights(local, k, r, eta[k], y, o, memo, weights);
        const [uuWeight, yWeight] = weights;
        const suu = layout.suu + k * P * P;
        const syu = layout.syu + k * P;
        if (linked) {
          // w_uu E[u uᵀ], w_u E[u] under q(x_m | z = k)
          const eu = cells!.eu.subarray(k * P, (k + 1) * P);
          const euu = cells!.euu.subarray(k * P * P, (k + 1) * P * P);
          for (let i = 0; i < P; i++) {
            stats[syu + i] += yWeight * eu[i];
            for (let j = 0; j <= i; j++) stats[suu + i * P + j] += uuWeight * euu[i * P + j];
          }
        } else
          for (let i = 0; i < P; i++) {
            const wu = uuWeight * u[i];
            stats[syu + i] += yWeight * u[i];
            for (let j = 0; j <= i; j++) stats[suu + i * P + j] += wu * u[j];
          }
        // A linked row's own statistics are linear in u given the bound's parameter: E[u] (family.ts inputQuadratic).
        extra?.(r, y, stats, layout.syy + k * extraWidth, linked ? cells!.eu.subarray(k * P, (k + 1) * P) : u, local, k);
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
