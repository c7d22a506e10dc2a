/**
 * The shipped JSON Schemas (schemas/*.schema.json) are what the zod schemas generate, and a real
 * posterior.json satisfies its schema.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PosteriorSchema } from '../lib/schemas.js';
import { fit } from '../lib/api.js';
import { SCHEMA_FILES, schemaText } from '../scripts/schemas.js';

describe('published schemas', () => {
  it.each(Object.entries(SCHEMA_FILES))('%s is up to date (else: npm run schemas)', (file, make) => {
    expect(readFileSync(new URL(`../${file}`, import.meta.url), 'utf8')).toBe(schemaText(make()));
  });

  it('model.schema.json lets a model.json leave out every defaulted field, not the target', () => {
    const schema = JSON.parse(readFileSync(new URL('../schemas/model.schema.json', import.meta.url), 'utf8'));
    expect(schema.required).toEqual(['target']);
    expect(schema.additionalProperties).toBe(false);
  });

  it('a fitted posterior.json satisfies PosteriorSchema', async () => {
    const { posterior } = await fit('examples/forum.csv', { target: 'y', workers: 0, backend: 'reference' });
    const written = JSON.parse(JSON.stringify(posterior));
    expect(() => PosteriorSchema.parse(written)).not.toThrow();
    expect(posterior.format).toBe('clusterwise/posterior@1');
  });
});
