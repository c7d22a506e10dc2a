/**
 * The binary object format of the pipeline's numeric objects (posterior versions, partial and
 * group sums, parsed shards): a JSON header followed by typed arrays, little-endian, each array
 * 8-byte aligned so it is read in place without copying.
 *
 *   "CWB1" | u32 header bytes | header (UTF-8 JSON) | zero padding to 8 | array 0 | pad | array 1 …
 *
 * The header names the arrays, their element type and length (`arrays`), plus whatever fields the
 * writer adds. float64 stays float64 (sums across shards are exact to the bit, as in memory);
 * float32 is for parsed rows, which the kernel reads as float32 anyway.
 */
import { ProtocolError } from './protocol.js';

const MAGIC = 0x31425743; // "CWB1" read as a little-endian u32

export type TypedArray = Float64Array | Float32Array | Int32Array;
const KINDS = { f64: Float64Array, f32: Float32Array, i32: Int32Array } as const;
type Kind = keyof typeof KINDS;

function kindOf(a: TypedArray): Kind {
  if (a instanceof Float64Array) return 'f64';
  if (a instanceof Float32Array) return 'f32';
  return 'i32';
}

const align8 = (n: number) => (n + 7) & ~7;

export function encodeBinary(header: Record<string, unknown>, arrays: Record<string, TypedArray> = {}): Uint8Array {
  const names = Object.keys(arrays);
  const headerBytes = Buffer.from(JSON.stringify({ ...header, arrays: names.map((name) => ({ name, kind: kindOf(arrays[name]), length: arrays[name].length })) }), 'utf8');
  let size = align8(8 + headerBytes.length);
  for (const name of names) size = align8(size + arrays[name].byteLength);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, headerBytes.length, true);
  out.set(headerBytes, 8);
  let offset = align8(8 + headerBytes.length);
  for (const name of names) {
    const a = arrays[name];
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), offset);
    offset = align8(offset + a.byteLength);
  }
  return out;
}

export interface DecodedBinary<H> {
  header: H;
  arrays: Record<string, TypedArray>;
}

/**
 * Decode an object written by encodeBinary; `what` names it in errors. The arrays are views of
 * `bytes` where aligned (so `bytes` must not be changed while they are in use), copies elsewhere.
 */
export function decodeBinary<H = Record<string, unknown>>(bytes: Uint8Array, what: string): DecodedBinary<H> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8 || view.getUint32(0, true) !== MAGIC) throw new ProtocolError(`${what}: not a clusterwise binary object`);
  const headerLength = view.getUint32(4, true);
  const header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString('utf8')) as H & {
    arrays: { name: string; kind: Kind; length: number }[];
  };
  const arrays: Record<string, TypedArray> = {};
  let offset = align8(8 + headerLength);
  for (const { name, kind, length } of header.arrays) {
    const Type = KINDS[kind];
    const byteLength = length * Type.BYTES_PER_ELEMENT;
    if (offset + byteLength > bytes.length) throw new ProtocolError(`${what}: truncated (array ${name})`);
    // In place when aligned (the usual case: the writer pads each array to 8 bytes, and a body
    // from ObjectStore.get is the caller's own copy); a copy when the body is a slice of a buffer
    // at an offset the element type cannot start at.
    const at = bytes.byteOffset + offset;
    arrays[name] = at % Type.BYTES_PER_ELEMENT === 0 ? new Type(bytes.buffer as ArrayBuffer, at, length) : new Type(bytes.slice(offset, offset + byteLength).buffer);
    offset = align8(offset + byteLength);
  }
  return { header, arrays };
}
