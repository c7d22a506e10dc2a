/** One comparison of a fast kernel with the float64 reference, for the family test files (test/poisson.test.ts, test/multinomial.test.ts). */
import { expect } from 'vitest';
import { initialize } from '../../lib/inference/init.js';
import { paramsFor, runLocalStep } from '../../lib/inference/vb.js';
import { referenceKernel } from '../../lib/kernel/reference.js';
import type { Batch, Kernel } from '../../lib/kernel/types.js';
import type { ModelSpec } from '../../lib/model/spec.js';

/**
 * At the posterior of a short fit on `batch`: `kernel`'s local step gives the reference's
 * statistics (each within 1e-5 of the largest), log-likelihood (1e-5 relative) and
 * responsibilities (1e-3), within float32 tolerance.
 */
export function expectKernelMatchesReference(kernel: Kernel, spec: ModelSpec, batch: Batch): void {
  const fit = initialize(spec, batch, referenceKernel, { restarts: 1, seed: 1 });
  const params = paramsFor(spec, fit.state);
  const ref = runLocalStep(referenceKernel, params, batch, { responsibilities: true });
  const prepared = kernel.prepare(batch);
  try {
    const got = runLocalStep(kernel, params, prepared, { responsibilities: true });
    expect(Math.abs(got.logLik - ref.logLik) / Math.abs(ref.logLik)).toBeLessThan(1e-5);
    const scale = Math.max(...ref.stats.map(Math.abs));
    for (let i = 0; i < ref.stats.length; i++) expect(Math.abs(got.stats[i] - ref.stats[i])).toBeLessThan(1e-5 * scale);
    let worst = 0;
    for (let i = 0; i < ref.responsibilities!.length; i++) worst = Math.max(worst, Math.abs(got.responsibilities![i] - ref.responsibilities![i]));
    expect(worst).toBeLessThan(1e-3);
  } finally {
    kernel.release(prepared);
  }
}
