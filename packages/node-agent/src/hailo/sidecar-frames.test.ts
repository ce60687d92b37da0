import { isConclaveError } from '@conclave/common';
import { protobuf, protoDir } from '@conclave/protocol';
import { describe, expect, it } from 'vitest';
import { FrameReader, decodeRequest, decodeResponse, encodeRequestFrame, encodeResponseFrame } from './sidecar-frames.js';

function generic(typeName: string, message: object): Buffer {
  const root = new protobuf.Root();
  root.resolvePath = (_o, target) => `${protoDir()}/${target}`;
  root.loadSync('conclave/v1/hailo_sidecar.proto');
  const type = root.lookupType(typeName);
  return Buffer.from(type.encode(type.fromObject(message)).finish());
}

function header(length: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(length);
  return out;
}

describe('encodeRequestFrame', () => {
  it('lays out an infer request byte for byte as protobufjs does, without copying the tensor', () => {
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256));
    const request = {
      id: 7, body: 'infer' as const,
      infer: { modelId: 'abc', inputs: [{ name: 'images', dtype: 'uint8', dims: [1, 10, 10, 3], data }], timeoutMs: 500 },
    };
    const chunks = encodeRequestFrame(request);
    expect(chunks).toContain(data);
    const frame = Buffer.concat(chunks);
    const payload = generic('conclave.v1.SidecarRequest', request);
    expect(frame.readUInt32BE(0)).toBe(payload.length);
    expect(frame.subarray(4)).toEqual(payload);
    const decoded = decodeRequest(frame.subarray(4));
    expect(decoded.body).toBe('infer');
    expect(decoded.infer?.inputs[0]?.dims).toEqual([1, 10, 10, 3]);
    expect(decoded.infer?.inputs[0]?.data.equals(data)).toBe(true);
  });

  it('encodes the other bodies through protobufjs', () => {
    const request = { id: 2, body: 'load' as const, load: { modelId: 'm', hefPath: '/x.hef', batchSize: 4, formats: { out: 'float32' } } };
    const frame = Buffer.concat(encodeRequestFrame(request));
    expect(frame.subarray(4)).toEqual(generic('conclave.v1.SidecarRequest', request));
    expect(decodeRequest(frame.subarray(4)).load).toEqual({ modelId: 'm', hefPath: '/x.hef', batchSize: 4, formats: { out: 'float32' } });
  });
});

describe('decodeResponse', () => {
  it('gives the __Output shape with tensor bytes as Buffer views of the frame', () => {
    const data = Buffer.alloc(1024, 3);
    const frame = Buffer.concat(encodeResponseFrame({
      id: 9, infer: { outputs: [{ name: 'out', dtype: 'float32', dims: [1, 256], data }], deviceMs: 1.5, batchedFrames: 2 },
    }));
    const payload = frame.subarray(4);
    const response = decodeResponse(payload);
    expect(response.id).toBe(9);
    expect(response.body).toBe('infer');
    const out = response.infer!.outputs[0]!;
    expect(Buffer.isBuffer(out.data)).toBe(true);
    expect(out.data.equals(data)).toBe(true);
    expect(out.data.buffer).toBe(payload.buffer);
    expect(response.infer!.deviceMs).toBe(1.5);
  });

  it('fills proto3 defaults', () => {
    const response = decodeResponse(Buffer.concat(encodeResponseFrame({ id: 1, health: {} })).subarray(4));
    expect(response.health).toEqual({ ok: false, loaded: [], inferences: 0, uptimeS: 0 });
  });

  it('refuses an undecodable payload with NODE-NET-632', () => {
    expect(() => decodeResponse(Buffer.from([0x12, 0x64, 0x01, 0x02]))).toThrow(expect.objectContaining({ code: 'NODE-NET-632' }));
  });
});

describe('FrameReader', () => {
  it('returns a frame inside one chunk as a view of it', () => {
    const chunk = Buffer.concat([header(3), Buffer.from('abc'), header(2), Buffer.from('de')]);
    const frames = new FrameReader().push(chunk);
    expect(frames.map((f) => f.toString())).toEqual(['abc', 'de']);
    expect(frames[0]!.buffer).toBe(chunk.buffer);
  });

  it('joins a frame split anywhere, the header included', () => {
    const bytes = Buffer.concat([header(5), Buffer.from('hello'), header(0), header(2), Buffer.from('ok')]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const reader = new FrameReader();
      const frames = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))];
      expect(frames.map((f) => f.toString())).toEqual(['hello', '', 'ok']);
      expect(reader.pendingBytes).toBe(0);
    }
    const reader = new FrameReader();
    const byteByByte = [...bytes].flatMap((b) => reader.push(Buffer.from([b])));
    expect(byteByByte.map((f) => f.toString())).toEqual(['hello', '', 'ok']);
  });

  it('counts the bytes of an unfinished frame', () => {
    const reader = new FrameReader();
    expect(reader.push(Buffer.concat([header(10), Buffer.from('abc')]))).toEqual([]);
    expect(reader.pendingBytes).toBe(3);
    expect(reader.pendingFrameBytes).toBe(10);
  });

  it('refuses a length above the limit with NODE-NET-632 before allocating it', () => {
    const reader = new FrameReader(1024);
    let caught: unknown;
    try {
      reader.push(header(1025));
    } catch (err) {
      caught = err;
    }
    expect(isConclaveError(caught) && caught.code).toBe('NODE-NET-632');
    expect((caught as Error).message).toContain('1025 bytes exceeds the limit of 1024');
  });
});
