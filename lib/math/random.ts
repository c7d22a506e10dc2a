/** Seeded randomness (pure-rand's xoroshiro128+): every random choice in a run derives from config.seed. */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

export interface Random {
  /** Uniform on [0, 1). */
  uniform(): number;
  /** Uniform integer on [0, n). */
  int(n: number): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
}

/** A generator for `seed`, and independent streams by `stream` (e.g. the restart index). */
export function createRandom(seed: number, stream = 0): Random {
  const rng = xoroshiro128plus(seed);
  for (let i = 0; i < stream; i++) rng.jump?.();
  const uniform = () => uniformFloat64(rng);
  // Small seeds leave xoroshiro's state sparse; its first outputs are poor, so discard a few.
  for (let i = 0; i < 16; i++) uniform();
  return {
    uniform,
    int: (n) => Math.min(n - 1, Math.floor(uniform() * n)),
    normal: () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()),
  };
}

/** Fisher–Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], random: Random): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
