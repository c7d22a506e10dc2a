/**
 * The simulator's data: a gaussian cluster-weighted model of D covariates and K clusters written as
 * CSV with fixed-width lines, so any byte range is generated on demand without the bytes before
 * it (a 100 GB data set costs nothing until read). Line i is a function of (seed, i) alone; its
 * cluster is known, for the ARI.
 *
 * Past `realRows`, a shard's rows are stood in for by an evenly spaced sample of its lines
 * (`surrogateCodec`): the real parser and the real kernel run on the sample, and the worker
 * weights its statistics by rows / sample (lib/pipeline/worker.ts ShardCodec).
 */
import { csvShardCodec, type ShardCodec } from '../../lib/pipeline/worker.js';

export interface Mixture {
  D: number;
  K: number;
  centers: number[][];
  /** Per cluster: coefficients of x_1..x_D, then the intercept. */
  coefficients: number[][];
  noiseSd: number;
}

/** A 32-bit mixing hash (Bob Jenkins' one-at-a-time finalizer style): uniform bits from (seed, i, j). */
function hash(a: number, b: number, c: number): number {
  let h = (a * 0x9e3779b1) ^ (b * 0x85ebca77) ^ (c * 0xc2b2ae3d);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}
const uniform = (a: number, b: number, c: number) => (hash(a, b, c) + 0.5) / 4294967296;
/** Standard normal by Box–Muller from two hashed uniforms. */
const normal = (a: number, b: number, c: number) => Math.sqrt(-2 * Math.log(uniform(a, b, 2 * c))) * Math.cos(2 * Math.PI * uniform(a, b, 2 * c + 1));

export function mixture(D: number, K: number, seed = 3): Mixture {
  return {
    D,
    K,
    centers: Array.from({ length: K }, (_, k) => Array.from({ length: D }, (_, j) => 4 * normal(seed, -1 - k, j))),
    coefficients: Array.from({ length: K }, (_, k) => Array.from({ length: D + 1 }, (_, j) => 2 * normal(seed, -100 - k, j))),
    noiseSd: 0.5,
  };
}

const X_WIDTH = 10; // "-0012.3456": sign, zero-padded digits (real CSVs have no padding spaces, and the parser's fast path expects none)
const Y_WIDTH = 14;
const clip = (v: number, width: number) => {
  const limit = 10 ** (width - 6) - 1;
  const c = Math.max(-limit, Math.min(limit, v));
  return (c < 0 ? '-' : '+') + Math.abs(c).toFixed(4).padStart(width - 1, '0');
};

export class GeneratedCsv {
  readonly header: string;
  readonly lineBytes: number;
  readonly size: number;
  constructor(
    readonly model: Mixture,
    readonly rows: number,
    readonly seed = 3,
  ) {
    this.header = [...Array.from({ length: model.D }, (_, i) => `x${i + 1}`), 'y'].join(',') + '\n';
    this.lineBytes = model.D * (X_WIDTH + 1) + Y_WIDTH + 1;
    this.size = this.header.length + rows * this.lineBytes;
  }

  get dataStart(): number {
    return this.header.length;
  }

  label(line: number): number {
    return hash(this.seed, line, 7) % this.model.K;
  }

  line(i: number): string {
    const { D, centers, coefficients, noiseSd } = this.model;
    const k = this.label(i);
    const x = centers[k].map((c, j) => c + normal(this.seed, i, j + 1));
    let y = coefficients[k][D] + noiseSd * normal(this.seed, i, 0);
    for (let j = 0; j < D; j++) y += coefficients[k][j] * x[j];
    return x.map((v) => clip(v, X_WIDTH)).join(',') + ',' + clip(y, Y_WIDTH) + '\n';
  }

  /** Bytes [start, end) of the file. */
  range(start: number, end: number): Uint8Array {
    end = Math.min(end, this.size);
    if (start >= end) return new Uint8Array(0);
    const parts: string[] = [];
    let from = 0;
    if (start < this.dataStart) parts.push(this.header);
    else from = start - (start - this.dataStart) % this.lineBytes; // the line start at or before `start`
    const first = Math.max(0, Math.floor((Math.max(start, this.dataStart) - this.dataStart) / this.lineBytes));
    const last = Math.min(this.rows, Math.ceil((end - this.dataStart) / this.lineBytes));
    for (let i = first; i < last; i++) parts.push(this.line(i));
    const text = Buffer.from(parts.join(''), 'latin1');
    const offset = start < this.dataStart ? start : start - from;
    return text.subarray(offset, offset + (end - start));
  }
}

/**
 * A shard of `rows` rows stood in for by `sample` of its lines, evenly spaced, parsed and
 * standardized by the real code, each weighing rows / sample. The binary copy holds the sample.
 */
export function surrogateCodec(data: GeneratedCsv, sample: number): ShardCodec {
  return {
    parse(manifest, index, bytes) {
      const shard = manifest.shards[index];
      const first = Math.ceil((Math.max(shard.start, data.dataStart) - data.dataStart) / data.lineBytes);
      const rows = Math.max(0, Math.min(data.rows, Math.ceil((shard.end - data.dataStart) / data.lineBytes)) - first);
      const take = Math.min(rows, sample);
      const lines = Array.from({ length: take }, (_, i) => data.line(first + Math.floor((i * rows) / take))).join('');
      const parsed = csvShardCodec.parse(manifest, index, Buffer.from(lines, 'latin1'));
      void bytes; // the shard's bytes were read (and counted) by the real worker code; only their lines' places matter here
      return { ...parsed, counts: { ...parsed.counts, rows, lines: rows }, weight: take > 0 ? rows / take : 1 };
    },
    encode: csvShardCodec.encode,
    decode: csvShardCodec.decode,
  };
}
