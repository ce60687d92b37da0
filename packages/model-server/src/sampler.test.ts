import { describe, expect, it } from 'vitest';
import { argmax, sampleToken, seededRandom } from './sampler.js';

describe('sampleToken', () => {
  const logits = Float32Array.from([1, 5, 3, 5, -2]);

  it('is greedy at temperature 0 and breaks ties by the lowest id', () => {
    expect(sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, Math.random)).toBe(1);
    expect(argmax(logits)).toBe(1);
  });

  it('gives the same sequence for the same seed', () => {
    const params = { temperature: 1, topK: 0, topP: 1 };
    const run = (seed: number): number[] => {
      const random = seededRandom(seed);
      return Array.from({ length: 20 }, () => sampleToken(logits, params, random));
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  it('keeps only the top k tokens', () => {
    const random = seededRandom(7);
    const seen = new Set(Array.from({ length: 200 }, () => sampleToken(logits, { temperature: 5, topK: 2, topP: 1 }, random)));
    expect([...seen].sort()).toEqual([1, 3]);
  });

  it('keeps only the nucleus for top p', () => {
    const random = seededRandom(7);
    const peaked = Float32Array.from([0, 10, 0, 0]);
    const seen = new Set(Array.from({ length: 100 }, () => sampleToken(peaked, { temperature: 1, topK: 0, topP: 0.5 }, random)));
    expect([...seen]).toEqual([1]);
  });
});
