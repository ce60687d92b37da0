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
    const hailo = { kind: 'hailo', state: 'active', arch: 'HAILO8' };
    const fleet = [{ ...offer(['cpu']), accelerator: hailo }, offer(['cpu'], ['text-generation'])];
    expect(unmetNeed(fleet, { accelerator: 'hailo', capability: 'text-generation' }))
      .toBe('no node offers both accelerator "hailo" and capability "text-generation"');
    expect(unmetNeed([...fleet, { ...offer(['cpu'], ['text-generation']), accelerator: hailo }], { accelerator: 'hailo', capability: 'text-generation' }))
      .toBeUndefined();
  });

  it('has nothing to say when a node offers it, or the job needs nothing', () => {
    expect(unmetNeed([offer(['cpu'])], { accelerator: 'cpu' })).toBeUndefined();
    expect(unmetNeed([offer([], ['text-generation'])], { capability: 'text-generation' })).toBeUndefined();
    expect(unmetNeed([], {})).toBeUndefined();
  });
});

describe('pickNode with an accelerator', () => {
  const active = { kind: 'hailo', state: 'active', arch: 'HAILO8' };
  const hailo = (id: string, extra: Partial<NodeSnapshot> = {}) => node(id, { accelerator: active, ...extra });
  const onHailo = new Map([['m', 'hailo']]);
  const onCpu = new Map([['m', 'cpu']]);
  const needs = { modelSha256: 'm', hefChips: ['hailo8'] };

  it('requires the accelerator active now, with a HEF for its chip', () => {
    const nodes = [
      node('cpu'),
      hailo('down', { accelerator: { kind: 'hailo', state: 'unavailable', arch: 'HAILO8', reason: 'sidecar exited' } }),
      hailo('hailo8l', { accelerator: { ...active, arch: 'HAILO8L' } }),
    ];
    expect(pickNode(nodes, { ...needs, accelerator: 'hailo' })).toBeUndefined();
    expect(pickNode([...nodes, hailo('up', { running: 1 })], { ...needs, accelerator: 'hailo' })?.id).toBe('up');
    // A node that only names hailo among its backends, without an active report, is not enough.
    expect(pickNode([node('named', { backends: ['cpu', 'hailo'] })], { accelerator: 'hailo' })).toBeUndefined();
  });

  it('waits rather than place a required accelerator where the model fell back to the CPU', () => {
    const nodes = [hailo('fell', { modelBackends: onCpu, loadedModels: new Set(['m']) }), node('cpu')];
    expect(pickNode(nodes, { ...needs, accelerator: 'hailo' })).toBeUndefined();
    expect(pickNode([...nodes, hailo('fresh', { running: 1 })], { ...needs, accelerator: 'hailo' })?.id).toBe('fresh');
  });

  it('with prefer, ranks nodes where the model runs (or would run) on the chip first, then the rest', () => {
    const loadedOnCpu = node('cpu', { loadedModels: new Set(['m']) });
    const wouldRun = hailo('would', { running: 1 });
    expect(pickNode([loadedOnCpu, wouldRun], { ...needs, preferAccelerator: 'hailo' })?.id).toBe('would');
    // Not for a chip the model has no HEF for: then the loaded CPU node wins.
    expect(pickNode([loadedOnCpu, hailo('l', { accelerator: { ...active, arch: 'HAILO8L' } })], { ...needs, preferAccelerator: 'hailo' })?.id)
      .toBe('cpu');
    // Nothing runs on the chip: the preference falls through to the usual rank.
    expect(pickNode([loadedOnCpu, node('idle')], { ...needs, preferAccelerator: 'hailo' })?.id).toBe('cpu');
  });

  it('chooses a node where the model fell back to the CPU last, after CPU-only nodes', () => {
    const fell = hailo('fell', { modelBackends: onCpu, loadedModels: new Set(['m']) });
    const cpuLoaded = node('cpu-loaded', { loadedModels: new Set(['m']), running: 1 });
    const cpuCold = node('cpu-cold', { running: 1 });
    expect(pickNode([fell, cpuLoaded], needs)?.id).toBe('cpu-loaded');
    expect(pickNode([fell, cpuCold], needs)?.id).toBe('cpu-cold');
    expect(pickNode([fell], needs)?.id).toBe('fell');
    // A model without a HEF for the chip runs on the CPU there as anywhere: not a fallback.
    expect(pickNode([hailo('nohef', { modelBackends: onCpu, loadedModels: new Set(['m']) }), cpuCold], { ...needs, hefChips: [] })?.id)
      .toBe('nohef');
  });

  it('without requirements keeps locality first, and at equal locality takes the chip', () => {
    const hailoLoaded = hailo('h', { modelBackends: onHailo, loadedModels: new Set(['m']), running: 1 });
    const cpuLoaded = node('c', { loadedModels: new Set(['m']) });
    expect(pickNode([cpuLoaded, hailoLoaded], needs)?.id).toBe('h');
    expect(pickNode([node('cold'), hailo('h-cold', { running: 1 }), node('disk', { storedModels: new Set(['m']), running: 1 })], needs)?.id)
      .toBe('disk');
  });
});

describe('unmetNeed with an accelerator', () => {
  const offer = (name: string, accelerator?: NodeOffer['accelerator']): NodeOffer => ({ name, backends: ['cpu'], features: [], accelerator });

  it('says which nodes have the accelerator but not active, with their reason', () => {
    const fleet = [offer('pi-01'), offer('pi-02', { kind: 'hailo', state: 'unavailable', reason: 'sidecar exited' })];
    expect(unmetNeed(fleet, { accelerator: 'hailo' })).toBe('no node has accelerator "hailo" active (pi-02: hailo unavailable: sidecar exited)');
    expect(unmetNeed([offer('pi-01')], { accelerator: 'hailo' })).toBe('no node offers accelerator "hailo"');
    expect(unmetNeed([offer('pi-01', { kind: 'hailo', state: 'absent' })], { accelerator: 'hailo' })).toBe('no node offers accelerator "hailo"');
  });

  it("says when no active chip is one the model was compiled for", () => {
    const fleet = [offer('pi-03', { kind: 'hailo', state: 'active', arch: 'HAILO8L' })];
    expect(unmetNeed(fleet, { accelerator: 'hailo', hefChips: ['hailo8'] }))
      .toBe('no node with accelerator "hailo" active has a chip the model has a HEF for (HEFs: hailo8; pi-03: hailo8l)');
    expect(unmetNeed(fleet, { accelerator: 'hailo', hefChips: ['hailo8l'] })).toBeUndefined();
  });
});
