import { describe, expect, it } from 'vitest';
import { StopMatcher } from './stop-matcher.js';

describe('StopMatcher', () => {
  it('passes text through without stop sequences', () => {
    const m = new StopMatcher([]);
    expect(m.push('hello ')).toEqual({ emit: 'hello ', stopped: false });
    expect(m.flush()).toBe('');
  });

  it('holds back a possible prefix and cuts at the stop', () => {
    const m = new StopMatcher(['END']);
    expect(m.push('abc E')).toEqual({ emit: 'abc ', stopped: false });
    expect(m.push('N')).toEqual({ emit: '', stopped: false });
    expect(m.push('D tail')).toEqual({ emit: '', stopped: true });
    expect(m.fullText).toBe('abc ');
  });

  it('releases a held-back prefix that was not a stop', () => {
    const m = new StopMatcher(['END']);
    expect(m.push('x E').emit).toBe('x ');
    expect(m.push('Z').emit).toBe('EZ');
    expect(m.push(' y').emit).toBe(' y');
  });

  it('stops at the earliest of several sequences spanning deltas', () => {
    const m = new StopMatcher(['.', 'demo model']);
    const out = [m.push('the demo'), m.push(' mod'), m.push('el is.')];
    expect(out.map((o) => o.emit).join('')).toBe('the ');
    expect(out.at(-1)?.stopped).toBe(true);
  });
});
