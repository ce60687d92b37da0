/**
 * mulberry32: a tiny deterministic generator, so that a seed names the same weights
 * in every process (tests compare a model built in one process with a run in another).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max], inclusive. */
export function randomInt(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/**
 * A dyadic value k / 2^shift with |k| <= maxNumerator. Sums and products of a few such
 * values are exact in float32, so a JS reference matches onnxruntime bit for bit
 * whatever order its kernels add in.
 */
export function randomDyadic(random: () => number, maxNumerator: number, shift: number): number {
  return randomInt(random, -maxNumerator, maxNumerator) / 2 ** shift;
}
