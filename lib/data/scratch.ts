/**
 * Typed arrays reused across calls that process one chunk after another (predict's chunks, a
 * worker's shards): each call takes views of the length it needs, grown when too short. Fresh
 * large arrays cost more than they look: the OS hands out zeroed pages on first touch, which on
 * the development VM ran at ~300 MB/s and took a third of predict's time. A view stays valid
 * only until the next call that uses the same scratch; contents are not cleared.
 */
export class Scratch {
  private readonly arrays = new Map<string, Float64Array | Float32Array | Int32Array>();

  float64(name: string, length: number): Float64Array {
    return this.take(name, length, (n) => new Float64Array(n)) as Float64Array;
  }

  float32(name: string, length: number): Float32Array {
    return this.take(name, length, (n) => new Float32Array(n)) as Float32Array;
  }

  int32(name: string, length: number): Int32Array {
    return this.take(name, length, (n) => new Int32Array(n)) as Int32Array;
  }

  private take<T extends Float64Array | Float32Array | Int32Array>(name: string, length: number, create: (n: number) => T): T {
    let array = this.arrays.get(name) as T | undefined;
    if (!array || array.length < length) {
      array = create(Math.max(length, Math.ceil((array?.length ?? 0) * 1.5)));
      this.arrays.set(name, array);
    }
    return array.subarray(0, length) as T;
  }
}

/** Fresh arrays every time: for one-off calls. */
export const noScratch = {
  float64: (_: string, n: number) => new Float64Array(n),
  float32: (_: string, n: number) => new Float32Array(n),
  int32: (_: string, n: number) => new Int32Array(n),
} satisfies Pick<Scratch, 'float64' | 'float32' | 'int32'>;

export type ArraySource = Pick<Scratch, 'float64' | 'float32' | 'int32'>;
