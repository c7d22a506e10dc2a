/** Small models and data for property tests: a spec, standardized random data, a random start. */
import { parseConfig, type ModelConfigInput } from '../../lib/config.js';
import { batchUpdate } from '../../lib/inference/vb.js';
import { hardAssignmentStats } from '../../lib/inference/init.js';
import type { Batch } from '../../lib/kernel/types.js';
import { createRandom } from '../../lib/math/random.js';
import { initialAlpha, type GlobalState } from '../../lib/model/posterior.js';
import { priorCoordinates, specFromConfig, type ModelSpec } from '../../lib/model/spec.js';

export function makeSpec(D: number, P: number, overrides: Partial<ModelConfigInput> = {}): ModelSpec {
  return specFromConfig(parseConfig({ target: 'y', components: 5, ...overrides }), D, P);
}

/** n rows from `groups` clusters with their own regressions; y 0/1 for bernoulli. */
export function makeBatch(spec: ModelSpec, n: number, seed = 1, groups = 3): Batch {
  const random = createRandom(seed);
  const D = spec.covariateModel ? spec.D : spec.P - 1;
  const { P } = spec;
  const centers = Array.from({ length: groups }, () => Array.from({ length: D }, () => 2 * random.normal()));
  const coefs = Array.from({ length: groups }, () => Array.from({ length: P }, () => random.normal()));
  const x = new Float64Array(n * spec.D);
  const u = new Float64Array(n * P);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const g = i % groups;
    const row = centers[g].map((c) => c + 0.5 * random.normal());
    if (spec.covariateModel) x.set(row, i * spec.D);
    for (let j = 0; j < P - 1; j++) u[i * P + j] = row[j % Math.max(1, D)] ?? random.normal();
    u[i * P + P - 1] = 1;
    let eta = 0;
    for (let j = 0; j < P; j++) eta += coefs[g][j] * u[i * P + j];
    y[i] = spec.family === 'gaussian' ? eta + 0.3 * random.normal() : random.uniform() < 1 / (1 + Math.exp(-eta)) ? 1 : 0;
  }
  return { n, x, u, y };
}

/** A start from random hard assignments. */
export function randomStart(spec: ModelSpec, batch: Batch, seed = 2): GlobalState {
  const random = createRandom(seed);
  const labels = Int32Array.from({ length: batch.n }, () => random.int(spec.T));
  return batchUpdate(spec, { lambda: priorCoordinates(spec), alpha: initialAlpha(spec) }, hardAssignmentStats(spec, batch, labels));
}
