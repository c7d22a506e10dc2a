/**
 * The covariate factors besides the Normal-Wishart: the one place a factor is registered
 * (factor.ts is the interface). A factor whose columns a spec lacks has no block and costs nothing.
 */
import type { LayoutSpec } from '../spec.js';
import { categorical } from './categorical.js';
import type { CovariateFactor, FactorBlock } from './factor.js';

export type { CovariateFactor } from './factor.js';

export const COVARIATE_FACTORS: readonly CovariateFactor[] = [categorical];

/** The registered factors the spec uses (those with a block). */
export function covariateFactorsOf(spec: LayoutSpec): CovariateFactor[] {
  return COVARIATE_FACTORS.filter((f) => f.block(spec) !== null);
}

/** Their blocks, in registry order, appended to the layout after syy (spec.ts). */
export function covariateBlocks(spec: LayoutSpec): FactorBlock[] {
  return COVARIATE_FACTORS.flatMap((f) => f.block(spec) ?? []);
}
