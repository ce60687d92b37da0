import { Worker } from 'node:worker_threads';
import type { TensorSpec } from '@conclave/protocol';

export interface ModelSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** What model-inspector-worker.ts is started with (its workerData). */
export interface InspectorRequest {
  path: string;
}

/** The one message model-inspector-worker.ts sends back. */
export type InspectorReply = { ok: true; result: ModelSignature } | { ok: false; message: string };

/** The worker entry, next to this module in dist/; tests running from src/ use the built file. */
function workerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith('.ts') ? new URL('../dist/model-inspector-worker.js', here) : new URL('./model-inspector-worker.js', here);
}

/**
 * Reads a model's declared inputs and outputs from the model itself, with onnxruntime, in a
 * worker thread (model-inspector-worker.ts says why). Rejects with the runtime's message when
 * the file is not a loadable ONNX model.
 */
export function inspectModel(path: string): Promise<ModelSignature> {
  return new Promise((resolve, reject) => {
    const request: InspectorRequest = { path };
    const worker = new Worker(workerUrl(), { workerData: request });
    worker.once('message', (message: InspectorReply) => {
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
