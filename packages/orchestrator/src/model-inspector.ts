import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { TensorSpec } from '@conclave/protocol';

export interface ModelSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

const require = createRequire(import.meta.url);

/*
 * Runs in a throw-away worker thread: creating an InferenceSession parses and optimises
 * the whole graph, which would stall the orchestrator's event loop (heartbeats, gRPC)
 * for as long as that takes on a large model.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const toSpec = (m) => {
  if (!m.isTensor) return { name: m.name, dtype: 'non-tensor', dims: [], dimNames: [] };
  const shape = Array.from(m.shape);
  return {
    name: m.name,
    dtype: m.type,
    dims: shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    dimNames: shape.map((d) => (typeof d === 'string' ? d : '')),
  };
};
ort.InferenceSession.create(workerData.path, { graphOptimizationLevel: 'disabled' })
  .then(async (session) => {
    const result = { inputs: session.inputMetadata.map(toSpec), outputs: session.outputMetadata.map(toSpec) };
    await session.release();
    parentPort.postMessage({ ok: true, result });
  })
  .catch((err) => parentPort.postMessage({ ok: false, message: String(err && err.message || err) }));
`;

/**
 * Reads a model's declared inputs and outputs from the model itself, with onnxruntime.
 * Rejects with the runtime's message when the file is not a loadable ONNX model.
 */
export function inspectModel(path: string): Promise<ModelSignature> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, ortPath: require.resolve('onnxruntime-node') },
    });
    worker.once('message', (message: { ok: true; result: ModelSignature } | { ok: false; message: string }) => {
      void worker.terminate();
      if (message.ok) resolve(message.result);
      else reject(new Error(message.message));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`model inspector exited with code ${code}`));
    });
  });
}
