import * as ort from 'onnxruntime-node';
import { typedArrayFromTensor, type TensorSpec, type WireTensor } from '@conclave/protocol';
import { goldenInputs } from './golden-check.js';

/**
 * A pre/post part this small runs on the agent's own thread: a worker thread's round trip (two
 * messages and a copy each way) costs more than the part itself. Measured on the board, at load.
 */
export const INLINE_PART_MAX_MS = 0.25;
const TIMED_RUNS = 5;

/** An ONNX part run by onnxruntime on the calling thread, for parts too small for a worker hop. */
export class InlinePart {
  private constructor(private readonly session: ort.InferenceSession) {}

  /**
   * Opens the part and times it on inputs that fit its declared signature; undefined (and the
   * session released) when its median run exceeds `maxMs`: it then belongs on a worker.
   */
  static async openIfSmall(path: string, inputs: readonly TensorSpec[], maxMs = INLINE_PART_MAX_MS): Promise<InlinePart | undefined> {
    const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
    const part = new InlinePart(session);
    try {
      const sample = goldenInputs(inputs);
      const times: number[] = [];
      for (let i = 0; i < TIMED_RUNS; i++) {
        const started = performance.now();
        await part.run(sample);
        times.push(performance.now() - started);
      }
      times.sort((a, b) => a - b);
      if (times[Math.floor(TIMED_RUNS / 2)]! <= maxMs) return part;
    } catch {
      // A part that cannot run on the sample (a shape the spec does not pin) goes to a worker.
    }
    await session.release();
    return undefined;
  }

  async run(inputs: Record<string, WireTensor>): Promise<Record<string, WireTensor>> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(inputs)) {
      feeds[name] = new ort.Tensor(tensor.dtype as ort.Tensor.Type, typedArrayFromTensor(tensor) as ort.Tensor.DataType, tensor.dims.map(Number));
    }
    const results = await this.session.run(feeds);
    const outputs: Record<string, WireTensor> = {};
    for (const [name, value] of Object.entries(results)) {
      const data = value.data as ArrayBufferView;
      outputs[name] = { dtype: value.type, dims: [...value.dims], raw: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
    }
    return outputs;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
