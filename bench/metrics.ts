/** Measures of a fit against a known answer, shared by the simulator and the studies. */

/** Adjusted Rand index of two labelings (Hubert & Arabie 1985). */
export function adjustedRandIndex(a: number[], b: number[]): number {
  const pairs = (n: number) => (n * (n - 1)) / 2;
  const table = new Map<string, number>();
  const rows = new Map<number, number>();
  const cols = new Map<number, number>();
  a.forEach((x, i) => {
    table.set(`${x},${b[i]}`, (table.get(`${x},${b[i]}`) ?? 0) + 1);
    rows.set(x, (rows.get(x) ?? 0) + 1);
    cols.set(b[i], (cols.get(b[i]) ?? 0) + 1);
  });
  const index = [...table.values()].reduce((s, n) => s + pairs(n), 0);
  const sa = [...rows.values()].reduce((s, n) => s + pairs(n), 0);
  const sb = [...cols.values()].reduce((s, n) => s + pairs(n), 0);
  const expected = (sa * sb) / pairs(a.length);
  return (index - expected) / ((sa + sb) / 2 - expected);
}
