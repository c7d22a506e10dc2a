/**
 * In-memory rows (records keyed by column name) against a fitted posterior: the standardized batch
 * the model's code takes, and each row's cluster responsibilities. Used by the library's `predict`
 * (lib/api.ts) and by the report's plots (lib/model/report.ts).
 */
import { paramsFor } from './inference/vb.js';
import { referenceKernel } from './kernel/reference.js';
import type { Batch } from './kernel/types.js';
import { clusterNumbers, modelOf } from './model/summary.js';
import { asDocument, type Posterior } from './schemas.js';
import { derive } from './model/posterior.js';
import { familyOf } from './model/families/index.js';
import { DataError } from './data/errors.js';
import { isMissingText, MAX_MAGNITUDE } from './data/csv.js';
import { MISSING_CODE } from './model/covariates/categorical.js';

/** A row as a record: column name → value. Numbers, numeric strings, and for a 0/1 target booleans. */
export type Row = Readonly<Record<string, unknown>>;

/**
 * Rows the report draws in its scatter plots (more would make the page heavy without showing
 * more), hence also the rows of the planner's sample kept for it. Here rather than in report.ts
 * so the planner need not load vega to know it.
 */
export const MAX_PLOTTED_ROWS = 1000;

/**
 * A cell as a number, or NaN when it cannot be used: missing, blank, not a number, or at or beyond
 * ±MAX_MAGNITUDE, whose squares overflow (the rule of a CSV cell, lib/data/csv.ts).
 */
function numberOf(value: unknown, binary: boolean): number {
  if (typeof value === 'boolean' && binary) return value ? 1 : 0;
  if (typeof value === 'string' && binary && /^(true|false)$/i.test(value.trim())) return value.trim().toLowerCase() === 'true' ? 1 : 0;
  const number = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Math.abs(number) < MAX_MAGNITUDE ? number : NaN;
}

export interface RowBatch {
  batch: Batch;
  /** Index in the input of each batch row; rows with a missing or non-numeric value are left out. */
  used: number[];
}

/**
 * The standardized batch of the rows that hold every column the model needs (clustering and
 * regression columns, and the target when `withTarget` is true), in the posterior's
 * standardization. With `withTarget: 'optional'` the target is read where it is valid and NaN
 * elsewhere, and does not decide which rows are used (predict's log density).
 */
export function batchOfRows(doc: Posterior, rows: readonly Row[], options: { withTarget: boolean | 'optional' }): RowBatch {
  const { plan, standardization: std } = doc.state;
  // Categorical columns: a row's level index, or −1 when missing; a level the fit did not see is an error naming it.
  const levelOf = (row: Row, index: number, slot: number): number => {
    const { column, levels } = plan.select[slot];
    const value = row[column];
    if (value === undefined || value === null || String(value).trim() === '') return -1;
    const level = levels!.indexOf(String(value).trim());
    if (level < 0)
      throw new DataError(`row ${index + 1}: "${String(value)}" is not a level the model was fitted with (${levels!.map((l) => JSON.stringify(l)).join(', ')})`, {
        file: 'rows',
        column,
      });
    return level;
  };
  const categories: number[] = [];
  const { target: targetSpec } = familyOf(doc.family);
  const binary = targetSpec.kind === 'binary';
  const used: number[] = [];
  const x: number[] = [];
  const u: number[] = [];
  const y: number[] = [];
  const offset: number[] = [];
  rows.forEach((row, index) => {
    const xs = plan.x.map((c, j) => (numberOf(row[c], false) - std.xMean[j]) / std.xSd[j]);
    const rs = plan.rSlot.map((slot, j) => {
      const level = plan.rLevel?.[j] ?? -1;
      if (level < 0) return (numberOf(row[plan.select[slot].column], false) - std.rMean[j]) / std.rSd[j];
      const value = levelOf(row, index, slot);
      return value < 0 ? NaN : value === level ? 1 : 0; // treatment coding
    });
    let offsetOfLevels = 0;
    const codes = (plan.xcSlot ?? []).map((slot) => {
      const level = levelOf(row, index, slot);
      const code = level < 0 ? NaN : offsetOfLevels + level;
      offsetOfLevels += plan.select[slot].levels!.length;
      return code;
    });
    // A missing value of a column the fit marginalized stays NaN (MISSING_CODE for a level; docs/model.md §18).
    const marginal = (slot: number) => {
      const value = row[plan.select[slot].column];
      return plan.select[slot].marginal === true && (value === undefined || value === null || Number.isNaN(value) || (typeof value === 'string' && isMissingText(value)));
    };
    const known = (values: number[], slots: readonly number[]) => values.every((v, j) => Number.isFinite(v) || marginal(slots[j]));
    const complete = known(xs, plan.xSlot) && known(rs, plan.rSlot) && known(codes, plan.xcSlot ?? []);
    codes.forEach((v, j) => Number.isNaN(v) && (codes[j] = MISSING_CODE));
    // A categorical target (multinomial): its label's index among the fitted classes, −1 when missing.
    const read = !options.withTarget ? 0 : targetSpec.kind === 'category' ? levelOf(row, index, plan.ySlot) : numberOf(row[plan.target], binary);
    // The offset of η in its own units; an exposure through its logarithm (NaN unless positive).
    const o = plan.offset ? (plan.offset.log ? Math.log(numberOf(row[plan.offset.column], false)) : numberOf(row[plan.offset.column], false)) : 0;
    const validTarget =
      targetSpec.kind === 'binary' ? read === 0 || read === 1 : targetSpec.kind === 'count' || targetSpec.kind === 'category' ? Number.isInteger(read) && read >= 0 : Number.isFinite(read);
    const optional = options.withTarget === 'optional';
    const target = optional && !validTarget ? NaN : read;
    const usable = complete && Number.isFinite(o) && (optional || (Number.isFinite(target) && (!options.withTarget || validTarget)));
    if (!usable) return;
    categories.push(...codes);
    offset.push(o);
    used.push(index);
    x.push(...xs);
    u.push(...rs, 1);
    y.push(targetSpec.standardized ? (target - std.yMean) / std.ySd : target);
  });
  const batch: Batch = { n: used.length, x: Float64Array.from(x), u: Float64Array.from(u), y: Float64Array.from(y) };
  if (plan.offset) batch.offset = Float64Array.from(offset);
  if (plan.xcSlot?.length) batch.categories = Int32Array.from(categories);
  return { batch, used };
}

/**
 * Each row's most responsible reported cluster and that responsibility, r_nk = q(z_n = k), given
 * its target too (the posterior's local step, float64 reference kernel), so that a conditional-only
 * model's rows are told apart by their regressions.
 */
export function responsibilities(doc: Posterior, batch: Batch): { cluster: Int32Array; probability: Float64Array } {
  const { spec, state } = modelOf(asDocument(doc));
  const clusterOf = clusterNumbers(derive(spec, state));
  const r = referenceKernel.localStep(paramsFor(spec, state), batch, { responsibilities: true }).responsibilities!;
  const cluster = new Int32Array(batch.n).fill(-1);
  const probability = new Float64Array(batch.n);
  for (let n = 0; n < batch.n; n++) {
    for (let k = 0; k < spec.T; k++) {
      const value = r[n * spec.T + k];
      if (clusterOf[k] >= 0 && value > probability[n]) {
        probability[n] = value;
        cluster[n] = clusterOf[k];
      }
    }
  }
  return { cluster, probability };
}
