import { describe, expect, it } from 'vitest';
import { initialize, stratifiedSubsample } from '../lib/inference/init.js';
import { createRandom } from '../lib/math/random.js';
import { activeComponents, batchUpdate, batchVb, localSums, paramsFor, runLocalStep, sviUpdate } from '../lib/inference/vb.js';
import { referenceKernel } from '../lib/kernel/reference.js';
import { derive, initialAlpha, klDivergence } from '../lib/model/posterior.js';
import { priorCoordinates } from '../lib/model/spec.js';
import { makeBatch, makeSpec, randomStart } from './support/models.js';

const variants = [
  { name: 'gaussian, stick-breaking', D: 2, P: 3, o: {} },
  { name: 'gaussian, stick-breaking, Gamma prior on α', D: 2, P: 3, o: { priors: { dpConcentrationPrior: { shape: 1, rate: 1 } } } },
  { name: 'gaussian, dirichlet', D: 3, P: 4, o: { weights: 'dirichlet' as const } },
  { name: 'gaussian, conditional-only', D: 2, P: 3, o: { covariateModel: false } },
  { name: 'bernoulli, stick-breaking', D: 2, P: 3, o: { family: 'bernoulli' as const } },
  { name: 'bernoulli, dirichlet, conditional-only', D: 2, P: 3, o: { family: 'bernoulli' as const, weights: 'dirichlet' as const, covariateModel: false } },
  // Shared coefficients (docs/model.md §15): the slopes at these positions of u common to every component.
  { name: 'gaussian, one shared slope', D: 2, P: 3, o: {}, shared: [0] },
  { name: 'gaussian, dirichlet, conditional-only, two shared slopes', D: 3, P: 4, o: { weights: 'dirichlet' as const, covariateModel: false }, shared: [0, 2] },
  { name: 'bernoulli, one shared slope', D: 2, P: 3, o: { family: 'bernoulli' as const }, shared: [1] },
  { name: 'poisson, one shared slope', D: 2, P: 3, o: { family: 'poisson' as const }, shared: [0] },
];

/** The variant's model: makeSpec with its shared positions. */
const specOf = (v: (typeof variants)[number]) => ({ ...makeSpec(v.D, v.P, v.o), ...('shared' in v ? { shared: v.shared } : {}) });

describe('batch VB (CAVI)', () => {
  for (const v of variants) {
    it(`never decreases the ELBO: ${v.name}`, () => {
      const spec = specOf(v);
      const batch = makeBatch(spec, 600, 3);
      const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 60, tolerance: 0 });
      for (let i = 1; i < fit.trace.length; i++) {
        expect(fit.trace[i]).toBeGreaterThanOrEqual(fit.trace[i - 1] - 1e-7 * Math.abs(fit.trace[i - 1]));
      }
      expect(fit.trace[fit.trace.length - 1]).toBeGreaterThan(fit.trace[0]);
    });
  }
});

describe('KL divergence of the global factors', () => {
  for (const v of variants.filter((v) => !('priors' in v.o))) {
    it(`is zero at the prior and positive elsewhere: ${v.name}`, () => {
      const spec = specOf(v);
      const prior = { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) };
      expect(klDivergence(derive(spec, prior), prior)).toBeCloseTo(0, 8);
      const batch = makeBatch(spec, 200, 5);
      const state = randomStart(spec, batch);
      expect(klDivergence(derive(spec, state), state)).toBeGreaterThan(0);
    });
  }
});

describe('SVI', () => {
  it('one step with the whole data as the batch and ρ = 1 equals a batch VB step', () => {
    for (const v of variants) {
      const spec = specOf(v);
      const batch = makeBatch(spec, 300, 9);
      const state = randomStart(spec, batch);
      const sums = localSums(referenceKernel, paramsFor(spec, state), [{ n: batch.n, data: batch }]);
      const svi = sviUpdate(spec, state, sums.stats, batch.n, batch.n, 1);
      const cavi = batchUpdate(spec, state, sums.stats);
      for (let i = 0; i < svi.lambda.length; i++) expect(svi.lambda[i]).toBeCloseTo(cavi.lambda[i], 9);
      expect(svi.alpha).toEqual(cavi.alpha);
    }
  });
});

describe('initialization', () => {
  it('screens on a subsample that holds every group even when the rows cycle through the groups', () => {
    // 8000 rows in groups i mod 4: a fixed stride of ⌈8000 / 2000⌉ = 4 would keep group 0 only.
    const batch = { n: 8000, x: new Float64Array(8000), u: new Float64Array(8000), y: Float64Array.from({ length: 8000 }, (_, i) => i % 4) };
    const sub = stratifiedSubsample(batch, 2000, createRandom(1, 100));
    expect(sub.n).toBe(2000);
    const perGroup = [0, 1, 2, 3].map((g) => sub.y.filter((y) => y === g).length);
    for (const count of perGroup) expect(count).toBeGreaterThan(400);
    expect(stratifiedSubsample(batch, 2000, createRandom(1, 100)).y).toEqual(sub.y); // the seed decides it
    expect(stratifiedSubsample(batch, 9000, createRandom(1, 100))).toBe(batch);
  });

  it('finds the four groups of a sample whose rows cycle through them', () => {
    const spec = makeSpec(2, 3, { components: 8 });
    const batch = makeBatch(spec, 8000, 4, 4);
    const init = initialize(spec, batch, referenceKernel, { restarts: 3, seed: 1 });
    const counts = derive(spec, init.state).count;
    expect(Array.from(counts).filter((c) => c > 0.1 * batch.n)).toHaveLength(4);
  });

  it('more restarts never make the chosen ELBO worse', () => {
    const spec = makeSpec(2, 3, { components: 6 });
    const batch = makeBatch(spec, 400, 4, 4);
    let previous = -Infinity;
    for (let restarts = 1; restarts <= 5; restarts++) {
      const init = initialize(spec, batch, referenceKernel, { restarts, seed: 3 });
      expect(init.restartElbos).toHaveLength(restarts);
      expect(init.elbo).toBe(Math.max(...init.restartElbos));
      expect(init.elbo).toBeGreaterThanOrEqual(previous);
      previous = init.elbo;
    }
  });
});

describe('pruning empty components from the local step', () => {
  it('gives the full local step\'s statistics and ELBO when the pruned components hold no rows', () => {
    const spec = makeSpec(2, 3, { components: 10 });
    const batch = makeBatch(spec, 600, 3);
    const fit = batchVb(spec, randomStart(spec, batch), referenceKernel, [{ n: batch.n, data: batch }], { maxIterations: 80, tolerance: 0 });
    const params = paramsFor(spec, fit.state);
    const active = activeComponents(params);
    expect(active.length).toBeGreaterThan(0);
    expect(active.length).toBeLessThan(spec.T); // the data has 3 groups: some of the 10 components died
    const full = referenceKernel.localStep(params, batch, { responsibilities: true });
    const pruned = runLocalStep(referenceKernel, params, batch, { responsibilities: true });
    expect(pruned.logLik).toBeCloseTo(full.logLik, 6);
    for (let i = 0; i < full.stats.length; i++) expect(Math.abs(pruned.stats[i] - full.stats[i])).toBeLessThan(1e-4);
    for (let i = 0; i < full.responsibilities!.length; i++) expect(Math.abs(pruned.responsibilities![i] - full.responsibilities![i])).toBeLessThan(1e-6);
  });
});
