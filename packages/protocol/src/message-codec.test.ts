import { describe, expect, it } from 'vitest';
import {
  MessageDecodeError, decodeNodeMessage, decodeOrchestratorMessage, encodeNodeMessage, encodeOrchestratorMessage,
} from './message-codec.js';

describe('message codec', () => {
  it('round-trips a node message with tensors, maps and oneofs into the loader shape', () => {
    const raw = Buffer.from(new Float32Array([1.5, -2]).buffer);
    const decoded = decodeNodeMessage(encodeNodeMessage({
      result: { jobId: 'j1', attempt: 2, outputs: { tensors: { y: { dtype: 'float32', dims: [1, 2], raw } } }, runMs: 1.25 },
    }));
    expect(decoded.body).toBe('result');
    expect(decoded.result?.outcome).toBe('outputs');
    expect(decoded.result?.jobId).toBe('j1');
    expect(decoded.result?.attempt).toBe(2);
    const y = decoded.result?.outputs?.tensors.y;
    expect(y?.dims).toEqual([1, 2]);
    expect(Buffer.isBuffer(y?.raw)).toBe(true);
    expect(Buffer.compare(y!.raw, raw)).toBe(0);
  });

  it('round-trips an orchestrator message with defaults filled in', () => {
    const decoded = decodeOrchestratorMessage(encodeOrchestratorMessage({ registered: { nodeId: 'n1' } }));
    expect(decoded.body).toBe('registered');
    expect(decoded.registered).toEqual({ nodeId: 'n1', heartbeatIntervalMs: 0, orchestratorVersion: '' });
  });

  it('refuses bytes that are not a message with a named error', () => {
    expect(() => decodeNodeMessage(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(MessageDecodeError);
  });
});
