/**
 * The response families by name: the one place a family is registered. The config schema
 * (lib/config.ts), the CLI's --family choices and posterior.json's schema take their names from here.
 */
import { bernoulli } from './bernoulli.js';
import type { FamilyDims, ReferenceRows, ResponseFamily } from './family.js';
import { gaussian } from './gaussian.js';
import { multinomial } from './multinomial.js';
import { poisson } from './poisson.js';

export type { ResponseFamily } from './family.js';

export const FAMILIES = {
  gaussian,
  bernoulli,
  poisson,
  multinomial,
} as const satisfies Record<string, ResponseFamily>;

export type FamilyName = keyof typeof FAMILIES;

/** The registered names, the default first. */
export const FAMILY_NAMES = Object.keys(FAMILIES) as [FamilyName, ...FamilyName[]];

/** The family registered as `name` (a name the config schema accepted). */
export function familyOf(name: FamilyName): ResponseFamily {
  return FAMILIES[name];
}

/** A family's reference row terms for a model of these dims (families/family.ts ResponseFamily.rows). */
export function referenceRows(family: ResponseFamily, dims: FamilyDims): ReferenceRows {
  return typeof family.rows === 'function' ? family.rows(dims) : family.rows;
}

/**
 * Whether the family integrates its response over a missing regression input (its rows'
 * inputQuadratic, docs/model.md §18); without it, rows with such a missing input are skipped.
 * Asked before the model's dims are known (planning the columns): whether a family has the
 * hook does not depend on them, so a family whose rows do (multinomial) is asked for the smallest.
 */
export function integratesMissingInputs(family: ResponseFamily): boolean {
  return referenceRows(family, { P: 1, classes: 2 }).inputQuadratic !== undefined;
}
