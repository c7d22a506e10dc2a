/** Merge and delete moves (lib/inference/moves.ts), batch VB with moves, and the information criteria. */
import { describe, expect, it } from 'vitest';
import { hardAssignmentStats, initialize, moveProposer, regressionSeeds } from '../lib/inference/init.js';
import { acceptMove, expectedLogJoint, proposeMoves } from '../lib/inference/moves.js';
import { batchUpdate, batchVb, elboOf, localSums, paramsFor, runLocalStep } from '../lib/inference/vb.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import type { Batch } from '../lib/kernel/types.js';
import { createRandom } from '../lib/math/random.js';
import { LN_2PI } from '../lib/math/special.js';
import { derive, initialAlpha, type GlobalState } from '../lib/model/posterior.js';
import { noiseOf } from '../lib/model/families/gaussian.js';
import { layoutOf, priorCoordinates, type ModelSpec } from '../lib/model/spec.js';
import { informationCriteria, reportedComponents } from '../lib/model/summary.js';
import { makeBatch, makeSpec } from './support/models.js';

const fromLabels = (spec: ModelSpec, batch: Batch, labels: Int32Array): GlobalState =>
  batchUpdate(spec, { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) }, hardAssignmentStats(spec, batch, labels));

const evaluate = (spec: ModelSpec, state: GlobalState, batch: Batch) => {
  const sums = localSums(referenceKernel, paramsFor(spec, state), [{ n: batch.n, data: batch }]);
  return { sums, elbo: elboOf(spec, state, sums.logLik) };
};

/**
 * Three true clusters, the first one's statistics halved over components 0 and 3: two identical
 * components, a fixed point batch VB keeps (their responsibilities stay equal) and a merge undoes.
 */
function splitStart(spec: ModelSpec, batch: Batch): GlobalState {
  const stats = hardAssignmentStats(spec, batch, Int32Array.from({ length: batch.n }, (_, i) => i % 3));
  const layout = layoutOf(spec);
  const { D, P } = spec;
  for (const [offset, width] of [[layout.count, 1], [layout.sx, D], [layout.sxx, D * D], [layout.suu, P * P], [layout.syu, P], [layout.syy, 1]])
    for (let i = 0; i < width; i++) {
      stats[offset + i] /= 2;
      stats[offset + 3 * width + i] = stats[offset + i];
    }
  return batchUpdate(spec, { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) }, stats);
}

describe('merge and delete moves', () => {
  it('J(S) + H(r) is the ELBO of the responsibilities r at λ0 + S: between the ELBO before and after the update', () => {
    const spec = makeSpec(2, 3, { components: 4 });
    const batch = makeBatch(spec, 300, 3);
    const state = splitStart(spec, batch);
    const step = runLocalStep(referenceKernel, paramsFor(spec, state), batch, { responsibilities: true });
    const before = elboOf(spec, state, step.logLik);
    let entropy = 0;
    for (const r of step.responsibilities!) if (r > 0) entropy -= r * Math.log(r);
    const updated = batchUpdate(spec, state, step.stats);
    const bound = expectedLogJoint(spec, updated, step.stats) + entropy;
    const after = evaluate(spec, updated, batch).elbo;
    expect(bound).toBeGreaterThanOrEqual(before - 1e-8 * Math.abs(before));
    expect(bound).toBeLessThanOrEqual(after + 1e-8 * Math.abs(after));
    expect(after - before).toBeGreaterThan(0);
  });

  it('proposes merging the split cluster, and the merge raises the ELBO', () => {
    const spec = makeSpec(2, 3, { components: 4, weights: 'dirichlet' });
    const batch = makeBatch(spec, 600, 4);
    let state = splitStart(spec, batch);
    let { sums, elbo } = evaluate(spec, state, batch);
    for (let i = 0; i < 5; i++) {
      state = batchUpdate(spec, state, sums.stats);
      ({ sums, elbo } = evaluate(spec, state, batch));
    }
    const proposals = proposeMoves(spec, { state, stats: sums.stats, elbo }, { force: true });
    const merge = proposals.find((p) => p.kind === 'merge');
    expect(merge).toBeDefined();
    // The score is J(S') − J(S), computed factor by factor; here on the whole states.
    const lambda0 = priorCoordinates(spec);
    const statsOf = (g: GlobalState) => g.lambda.map((v, i) => v - lambda0[i]);
    const current = batchUpdate(spec, state, sums.stats);
    const direct = expectedLogJoint(spec, merge!.state, statsOf(merge!.state)) - expectedLogJoint(spec, current, statsOf(current));
    expect(merge!.score).toBeCloseTo(direct, 6);
    const candidate = evaluate(spec, merge!.state, batch).elbo;
    expect(acceptMove(elbo, candidate)).toBe(true);
    expect(reportedComponents(derive(spec, merge!.state))).toHaveLength(3);
  });

  it('nothing is proposed away from a local optimum unless forced', () => {
    const spec = makeSpec(2, 3, { components: 4 });
    const batch = makeBatch(spec, 300, 4);
    const state = splitStart(spec, batch);
    const { sums, elbo } = evaluate(spec, state, batch);
    expect(proposeMoves(spec, { state, stats: sums.stats, elbo, previousElbo: elbo - 0.01 * Math.abs(elbo) })).toEqual([]);
    expect(proposeMoves(spec, { state, stats: sums.stats, elbo })).toEqual([]);
  });

  it('batch VB with moves: the ELBO never decreases, a move is kept only when it raises the ELBO, redundant components go', () => {
    for (const weights of ['stick-breaking', 'dirichlet'] as const) {
      const spec = makeSpec(2, 3, { components: 4, weights });
      const batch = makeBatch(spec, 600, 6);
      const start = splitStart(spec, batch);
      const tried: { current: number; candidate: number }[] = [];
      const propose = moveProposer(spec);
      const fit = batchVb(spec, start, referenceKernel, [{ n: batch.n, data: batch }], {
        maxIterations: 400,
        tolerance: 1e-9,
        propose,
        accept: (current, candidate) => {
          tried.push({ current, candidate });
          return acceptMove(current, candidate);
        },
      });
      for (let i = 1; i < fit.trace.length; i++) expect(fit.trace[i]).toBeGreaterThanOrEqual(fit.trace[i - 1] - 1e-9 * Math.abs(fit.trace[i]));
      // Every accepted move is in the trace as a rise; every rejected one would have lowered it or kept it.
      const accepted = tried.filter((t) => acceptMove(t.current, t.candidate));
      expect(accepted.length).toBe(fit.accepted.length);
      for (const t of accepted) expect(fit.trace).toContain(t.candidate);
      expect(fit.accepted.length).toBeGreaterThan(0);
      expect(fit.converged).toBe(true);
      expect(reportedComponents(derive(spec, fit.state))).toHaveLength(3);
    }
  });

  it('a move that lowers the ELBO (merging two true clusters) is rejected', () => {
    const spec = makeSpec(2, 3, { components: 3, weights: 'dirichlet' });
    const batch = makeBatch(spec, 600, 7);
    const truth = fromLabels(spec, batch, Int32Array.from({ length: batch.n }, (_, i) => i % 3));
    const merged = fromLabels(spec, batch, Int32Array.from({ length: batch.n }, (_, i) => Math.min(1, i % 3)));
    const fit = batchVb(spec, truth, referenceKernel, [{ n: batch.n, data: batch }], {
      maxIterations: 50,
      tolerance: 1e-9,
      propose: (_, rejected) => (rejected.has('bad') ? [] : [{ key: 'bad', state: merged }]),
      accept: acceptMove,
    });
    expect(fit.accepted).toEqual([]);
    expect(reportedComponents(derive(spec, fit.state))).toHaveLength(3);
  });
});

describe('initialization that explores', () => {
  it('regression seeds recover two crossing lines that k-means on [r, y] splits by range', () => {
    // y = 2r or y = −2r + noise: the lines cross at 0, so a split by the range of r is wrong.
    const spec = makeSpec(0, 2, { components: 2, covariateModel: false, weights: 'dirichlet' });
    const random = createRandom(3);
    const n = 400;
    const u = new Float64Array(n * 2);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const r = 2 * random.uniform() - 1;
      u.set([r, 1], i * 2);
      y[i] = (i % 2 ? 2 : -2) * r + 0.1 * random.normal();
    }
    const batch = { n, x: new Float64Array(0), u, y };
    const labels = regressionSeeds(spec, batch, 2, createRandom(1), 10);
    let agree = 0;
    for (let i = 0; i < n; i++) agree += labels[i] === i % 2 ? 1 : 0;
    // Near the crossing either line fits; elsewhere a row's line is its label.
    expect(Math.max(agree, n - agree) / n).toBeGreaterThan(0.85);
    const init = initialize(spec, batch, referenceKernel, { restarts: 2, seed: 1 });
    const coefs = derive(spec, init.state).coef;
    expect(Math.sign(coefs[0])).not.toBe(Math.sign(coefs[2]));
    expect(init.converged).toBe(true);
  });
});

describe('information criteria', () => {
  /** Σ_n ln Σ_k π̂_k N(x_n | m_k, (ν W)⁻¹) N(y_n | θ̂ᵀu_n, b/a), row by row. */
  function plugInLogLikelihood(spec: ModelSpec, state: GlobalState, batch: Batch): number {
    const d = derive(spec, state);
    const { D, P, T } = spec;
    let total = 0;
    for (let n = 0; n < batch.n; n++) {
      const terms: number[] = [];
      for (let k = 0; k < T; k++) {
        if (d.count[k] <= 0) continue;
        let t = Math.log(d.ePi[k]);
        if (D > 0) {
          let q = 0;
          for (let i = 0; i < D; i++)
            for (let j = 0; j < D; j++)
              q += (batch.x[n * D + i] - d.mean[k * D + i]) * d.nu[k] * d.wishart[k * D * D + i * D + j] * (batch.x[n * D + j] - d.mean[k * D + j]);
          t += 0.5 * (d.lnDetW[k] + D * Math.log(d.nu[k])) - (D / 2) * LN_2PI - 0.5 * q;
        }
        let fit = 0;
        for (let i = 0; i < P; i++) fit += d.coef[k * P + i] * batch.u[n * P + i];
        const tau = noiseOf(d, k).shape / noiseOf(d, k).rate;
        t += 0.5 * Math.log(tau) - 0.5 * LN_2PI - 0.5 * tau * (batch.y[n] - fit) ** 2;
        terms.push(t);
      }
      const max = Math.max(...terms);
      total += max + Math.log(terms.reduce((s, t) => s + Math.exp(t - max), 0));
    }
    return total;
  }

  it('the plug-in log-likelihood is a tight lower bound of the exact one; ICL ≥ BIC; BIC prefers the true K', () => {
    const bic: number[] = [];
    for (const T of [2, 3]) {
      const spec = makeSpec(2, 3, { components: T, weights: 'dirichlet' });
      const batch = makeBatch(spec, 900, 8);
      const labels = Int32Array.from({ length: batch.n }, (_, i) => Math.min(T - 1, i % 3));
      const fit = batchVb(spec, fromLabels(spec, batch, labels), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 300, tolerance: 1e-10 });
      const c = informationCriteria(spec, fit.state, fit.elbo, batch.n, 0)!;
      const exact = plugInLogLikelihood(spec, fit.state, batch);
      expect(c.logLikelihood).toBeLessThanOrEqual(exact + 1e-6 * Math.abs(exact));
      expect(exact - c.logLikelihood).toBeLessThan(0.01 * Math.abs(exact));
      expect(c.icl).toBeGreaterThanOrEqual(c.bic);
      expect(c.parameters).toBe(T - 1 + T * (2 + 3 + 3 + 1));
      bic.push(c.bic);
    }
    expect(bic[1]).toBeLessThan(bic[0]);
  });
});
