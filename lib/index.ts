/**
 * `import … from 'clusterwise'`: fit and predict on files or rows in memory (lib/api.ts), the
 * schemas of posterior.json and model.json (lib/schemas.ts, shipped as JSON Schema in schemas/),
 * and the report renderer.
 */
export { fit, predict, type Data, type FitOptions, type FitResult, type Predictions, type PredictOptions, type Row, type Table } from './api.js';
export { ConfigError, ModelConfigSchema, parseConfig, type ModelConfig, type ModelConfigInput } from './config.js';
export { DataError } from './data/errors.js';
export { OutputFolderError, OutputLockedError } from './local/out-lock.js';
export { MAX_THREADS } from './local/threads.js';
export { renderReport, type ReportInputs } from './model/report.js';
export { modelJsonSchema, posteriorJsonSchema, PosteriorSchema, POSTERIOR_FORMAT, type Posterior } from './schemas.js';
