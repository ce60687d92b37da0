import { describe, expect, it } from 'vitest';
import { pickNode, unmetNeed } from './scheduler.js';
import type { NodeOffer, NodeSnapshot } from './scheduler.js';

function node(id: string, extra: Partial<NodeSnapshot> = {}): NodeSnapshot {
  return {
    id, state: 'connected', slots: 2, running: 0, loadedModels: new Set(), storedModels: new Set(),
    backends: ['cpu'], features: [], draining: false, lastAssignedAtMs: 0, ...extra,
  };
}

describe('pickNode', () => {
  it('prefers a node with the model loaded, then on disk, over a less loaded one', () => {
    const nodes = [
      node('a'),
      node('b', { running: 1, storedModels: new Set(['m']) }),
      node('c', { running: 1, loadedModels: new Set(['m']) }),
    ];
    expect(pickNode(nodes, { modelSha256: 'm' })?.id).toBe('c');
    expect(pickNode(nodes.slice(0, 2), { modelSha256: 'm' })?.id).toBe('b');
  });

  it('never picks a full, suspect, dead, draining or incapable node', () => {
    const nodes = [
      node('full', { running: 2 }),
      node('suspect', { state: 'suspect' }),
      node('dead', { state: 'dead' }),
      node('draining', { draining: true }),
      node('cpu-only', { backends: ['cpu'] }),
    ];
    expect(pickNode(nodes, {})?.id).toBe('cpu-only');
    expect(pickNode(nodes, { accelerator: 'hailo' })).toBeUndefined();
    expect(pickNode(nodes, { capability: 'text-generation' })).toBeUndefined();
  });

  it('never places a job that runs a model on a node without a backend, whatever else it has', () => {
    const text = node('text', { backends: [], features: ['text-generation'], storedModels: new Set(['m']), lastAssignedAtMs: -1 });
    expect(pickNode([text], { modelSha256: 'm' })).toBeUndefined();
    expect(pickNode([text, node('cpu', { running: 1 })], { modelSha256: 'm' })?.id).toBe('cpu');
    // Jobs without a model still go there when it has what they need.
    expect(pickNode([text, node('cpu')], { capability: 'text-generation' })?.id).toBe('text');
  });

  it('spreads equal choices to the node that waited longest', () => {
    const nodes = [node('a', { lastAssignedAtMs: 20 }), node('b', { lastAssignedAtMs: 10 })];
    expect(pickNode(nodes, {})?.id).toBe('b');
  });

  it('balances by load ratio', () => {
    const nodes = [node('a', { slots: 4, running: 2 }), node('b', { slots: 2, running: 0 })];
    expect(pickNode(nodes, {})?.id).toBe('b');
  });
});

describe('unmetNeed', () => {
  const offer = (backends: string[], features: string[] = []): NodeOffer => ({ backends, features });

  it('names the accelerator or the capability no node offers', () => {
    const fleet = [offer(['cpu']), offer([], ['text-generation'])];
    expect(unmetNeed(fleet, { accelerator: 'hailo' })).toBe('no node offers accelerator "hailo"');
    expect(unmetNeed([offer(['cpu'])], { capability: 'text-generation' })).toBe('no node offers capability "text-generation"');
    expect(unmetNeed([], { accelerator: 'cpu', capability: 'text-generation' })).toBe('no node offers accelerator "cpu"');
  });

  it('asks for one node that offers both', () => {
    const fleet = [offer(['hailo']), offer(['cpu'], ['text-generation'])];
    expect(unmetNeed(fleet, { accelerator: 'hailo', capability: 'text-generation' }))
      .toBe('no node offers both accelerator "hailo" and capability "text-generation"');
    expect(unmetNeed([...fleet, offer(['cpu', 'hailo'], ['text-generation'])], { accelerator: 'hailo', capability: 'text-generation' }))
      .toBeUndefined();
  });

  it('has nothing to say when a node offers it, or the job needs nothing', () => {
    expect(unmetNeed([offer(['cpu'])], { accelerator: 'cpu' })).toBeUndefined();
    expect(unmetNeed([offer([], ['text-generation'])], { capability: 'text-generation' })).toBeUndefined();
    expect(unmetNeed([], {})).toBeUndefined();
  });
});
