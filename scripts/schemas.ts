/**
 * `npm run schemas`: writes the JSON Schemas of posterior.json and model.json, generated from their
 * zod schemas (lib/schemas.ts), to schemas/. test/schemas.test.ts checks the committed files match.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { modelJsonSchema, posteriorJsonSchema } from '../lib/schemas.js';

export const SCHEMA_FILES = {
  'schemas/posterior.schema.json': posteriorJsonSchema,
  'schemas/model.schema.json': modelJsonSchema,
} as const;

/** The text of a schema file as committed. */
export const schemaText = (schema: Record<string, unknown>) => JSON.stringify(schema, null, 2) + '\n';

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = new URL('..', import.meta.url);
  for (const [file, make] of Object.entries(SCHEMA_FILES)) {
    writeFileSync(new URL(file, root), schemaText(make()));
    console.log(`wrote ${file}`);
  }
}
