/** Paths in a posterior.json that hold null or a non-number where a number belongs (state.alpha may be null: α fixed). */
export function badValues(text: string): string[] {
  const bad: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (value === null) {
      if (path !== 'state.alpha') bad.push(path);
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value)) bad.push(path);
    } else if (typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
  };
  if (/\bNaN\b|\bInfinity\b/.test(text)) bad.push('(text)');
  walk(JSON.parse(text), '');
  return bad;
}
