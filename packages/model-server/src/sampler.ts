/** How the next token is chosen from the logits of one position. */
export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens; 0 disables. */
  topK: number;
  /** Keep the smallest set whose probability reaches p; 1 disables. */
  topP: number;
}

/** A seeded PRNG (mulberry32): the same seed gives the same samples on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/**
 * Picks a token. Ties in greedy mode go to the lowest id, so greedy output is
 * fully deterministic. Sorting happens only when top-k or top-p need it,
 * because a full sort of a 150k vocabulary costs milliseconds per token.
 */
export function sampleToken(logits: ArrayLike<number>, params: SamplingParams, random: () => number): number {
  if (params.temperature <= 0) return argmax(logits);
  const n = logits.length;
  let ids: number[];
  if (params.topK > 0 && params.topK < n) {
    ids = topKIndices(logits, params.topK);
  } else if (params.topP < 1) {
    ids = Array.from({ length: n }, (_, i) => i).sort((a, b) => (logits[b] as number) - (logits[a] as number));
  } else {
    ids = [];
  }
  const all = ids.length === 0;
  const count = all ? n : ids.length;
  const idAt = (i: number): number => (all ? i : (ids[i] as number));
  let max = -Infinity;
  for (let i = 0; i < count; i++) max = Math.max(max, logits[idAt(i)] as number);
  const probs = new Float64Array(count);
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const p = Math.exp(((logits[idAt(i)] as number) - max) / params.temperature);
    probs[i] = p;
    sum += p;
  }
  let keep = count;
  if (!all && params.topP < 1) {
    // ids are sorted by logit, so the nucleus is a prefix.
    let cumulative = 0;
    for (let i = 0; i < count; i++) {
      cumulative += (probs[i] as number) / sum;
      if (cumulative >= params.topP) {
        keep = i + 1;
        break;
      }
    }
    sum = 0;
    for (let i = 0; i < keep; i++) sum += probs[i] as number;
  }
  let r = random() * sum;
  for (let i = 0; i < keep; i++) {
    r -= probs[i] as number;
    if (r <= 0) return idAt(i);
  }
  return idAt(keep - 1);
}

function topKIndices(logits: ArrayLike<number>, k: number): number[] {
  // A k-sized sorted buffer: O(n·k) worst case, but k is small in practice.
  const top: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] as number;
    if (top.length === k && v <= (logits[top[k - 1] as number] as number)) continue;
    let j = top.length < k ? top.length : k - 1;
    if (top.length < k) top.push(i);
    while (j > 0 && (logits[top[j - 1] as number] as number) < v) {
      top[j] = top[j - 1] as number;
      j--;
    }
    top[j] = i;
  }
  return top;
}
