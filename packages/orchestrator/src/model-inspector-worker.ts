// The model inspector's throw-away worker thread: creating an InferenceSession parses and
// optimises the whole graph, which would stall the orchestrator's event loop (heartbeats,
// gRPC) for as long as that takes on a large model. It answers once and is terminated.
import { parentPort, workerData } from 'node:worker_threads';
import { InferenceSession } from 'onnxruntime-node';
import type { TensorSpec } from '@conclave/protocol';
import type { InspectorReply, InspectorRequest } from './model-inspector.js';

if (!parentPort) throw new Error('model-inspector-worker must run in a worker thread');
const port = parentPort;

/** A fixed dimension as is, a symbolic or unknown one as -1 with its name (or ''). */
function toSpec(metadata: InferenceSession.ValueMetadata): TensorSpec {
  if (!metadata.isTensor) return { name: metadata.name, dtype: 'non-tensor', dims: [], dimNames: [] };
  const shape = Array.from(metadata.shape);
  return {
    name: metadata.name,
    dtype: metadata.type,
    dims: shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    dimNames: shape.map((d) => (typeof d === 'string' ? d : '')),
  };
}

async function inspect({ path }: InspectorRequest): Promise<InspectorReply> {
  try {
    // No optimisation: only the declared signature is read, and optimising a large graph is slow.
    const session = await InferenceSession.create(path, { graphOptimizationLevel: 'disabled' });
    const result = { inputs: session.inputMetadata.map(toSpec), outputs: session.outputMetadata.map(toSpec) };
    await session.release();
    return { ok: true, result };
  } catch (err) {
    return { ok: false, message: err instanceof Error && err.message !== '' ? err.message : String(err) };
  }
}

port.postMessage(await inspect(workerData as InspectorRequest));
