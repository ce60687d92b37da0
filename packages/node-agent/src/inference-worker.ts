import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { TensorData } from '@conclave/protocol';
import { dataOfTransfer, transferFromData, transferListOf, type TransferTensor } from './ort-tensors.js';

/** What the pool gives each worker at spawn. */
export interface InferenceWorkerData {
  /** onnxruntime intra-op threads for every session in this worker. */
  readonly intraOpThreads: number;
}

/** Main thread → worker. */
export type WorkerRequest =
  | { readonly kind: 'load'; readonly id: number; readonly sha256: string; readonly path: string }
  | {
      readonly kind: 'run';
      readonly id: number;
      readonly sha256: string;
      readonly path: string;
      readonly inputs: Record<string, TransferTensor>;
    }
  | { readonly kind: 'unload'; readonly sha256: string }
  /** Release every session and end the thread once the current job is done. */
  | { readonly kind: 'close' }
  /** Fault injection for tests: throw an uncaught error at once, as a crashing worker would. */
  | { readonly kind: 'crash' };

/** Worker → main thread. `stage` tells a model that failed to load from a run that failed. */
export type WorkerReply =
  | { readonly kind: 'ready' }
  | { readonly kind: 'loaded'; readonly id: number; readonly inputNames: string[]; readonly outputNames: string[] }
  | { readonly kind: 'result'; readonly id: number; readonly outputs: Record<string, TransferTensor>; readonly runMs: number }
  | { readonly kind: 'failed'; readonly id: number; readonly stage: 'load' | 'run'; readonly message: string };

// This file is the worker thread's entry point: session.run blocks its thread for the
// whole run, so it must never share a thread with the agent's event loop.
const port = parentPort;
if (!port) throw new Error('inference-worker must run in a worker thread');
const { intraOpThreads } = workerData as InferenceWorkerData;

/** One session per model in this worker, created on first use (single-flight). */
const sessions = new Map<string, Promise<ort.InferenceSession>>();

function sessionFor(sha256: string, path: string): Promise<ort.InferenceSession> {
  let session = sessions.get(sha256);
  if (!session) {
    // By path, never by buffer: external data files are resolved next to the model
    // file, and onnxruntime can map the file instead of holding a second copy.
    session = ort.InferenceSession.create(path, {
      intraOpNumThreads: intraOpThreads,
      // The pool already runs one job per worker; inter-op threads would oversubscribe.
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    sessions.set(sha256, session);
    // A failed load is not cached: the next job tries again (the file may be replaced).
    void session.catch(() => sessions.delete(sha256));
  }
  return session;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function reply(message: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

async function handle(request: WorkerRequest): Promise<void> {
  switch (request.kind) {
    case 'load': {
      try {
        const session = await sessionFor(request.sha256, request.path);
        reply({ kind: 'loaded', id: request.id, inputNames: [...session.inputNames], outputNames: [...session.outputNames] });
      } catch (err) {
        reply({ kind: 'failed', id: request.id, stage: 'load', message: messageOf(err) });
      }
      return;
    }
    case 'run': {
      let session: ort.InferenceSession;
      try {
        session = await sessionFor(request.sha256, request.path);
      } catch (err) {
        reply({ kind: 'failed', id: request.id, stage: 'load', message: messageOf(err) });
        return;
      }
      try {
        const feeds: Record<string, ort.Tensor> = {};
        for (const [name, t] of Object.entries(request.inputs)) {
          feeds[name] = new ort.Tensor(t.dtype, dataOfTransfer(t) as ort.Tensor.DataType, t.dims);
        }
        const started = performance.now();
        const results = await session.run(feeds);
        const runMs = performance.now() - started;
        const outputs: Record<string, TransferTensor> = {};
        for (const [name, t] of Object.entries(results)) {
          outputs[name] = transferFromData(t.type, t.dims, t.data as TensorData);
        }
        reply({ kind: 'result', id: request.id, outputs, runMs }, transferListOf(outputs));
      } catch (err) {
        reply({ kind: 'failed', id: request.id, stage: 'run', message: messageOf(err) });
      }
      return;
    }
    case 'unload': {
      const session = sessions.get(request.sha256);
      sessions.delete(request.sha256);
      if (session) await session.then((s) => s.release(), () => undefined);
      return;
    }
    case 'close': {
      const all = [...sessions.values()];
      sessions.clear();
      await Promise.all(all.map((session) => session.then((s) => s.release(), () => undefined)));
      // With the port closed the thread has nothing left to wait for and exits by itself.
      port!.close();
      return;
    }
    case 'crash':
      return;
  }
}

// Requests are handled one at a time in arrival order; the pool sends at most one job
// at a time, and an unload queued behind a run waits for it.
let queue: Promise<void> = Promise.resolve();
port.on('message', (request: WorkerRequest) => {
  // Thrown here, outside the queue, so that no job of this worker runs after it.
  if (request.kind === 'crash') throw new Error('simulated inference worker crash');
  queue = queue.then(() => handle(request));
});
reply({ kind: 'ready' });
