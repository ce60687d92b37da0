// The engine's worker thread: owns the one onnxruntime session of a model and
// runs every forward pass, so the HTTP event loop never blocks on inference.
import { performance } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { parentPort } from 'node:worker_threads';
import { isConclaveError } from '@conclave/common';
import { DecoderSession } from './decoder-session.js';
import type { EngineRequest, FromWorker, SerializedError, ToWorker } from './engine-protocol.js';
import { resolveGeneration } from './generation-defaults.js';
import { GenerationLoop } from './generation-loop.js';
import { readModelConfig, type ModelConfig } from './model-config.js';
import { inspectModelDir, type ModelFiles } from './model-files.js';
import { TextCodec } from './text-codec.js';

if (!parentPort) throw new Error('engine-worker must run in a worker thread');
const port = parentPort;

interface Loaded {
  files: ModelFiles;
  config: ModelConfig;
  codec: TextCodec;
  decoder: DecoderSession;
  loop: GenerationLoop;
}

/** Longest a streamed delta waits in the worker to be sent with the next ones. */
const STREAM_FLUSH_MS = 5;

let loaded: Loaded | undefined;
const cancelled = new Set<number>();
const active = new Set<number>();

function send(message: FromWorker): void {
  port.postMessage(message);
}

function serialize(err: unknown, fallback: string): SerializedError {
  if (isConclaveError(err)) {
    const field = err.data['field'];
    return {
      code: err.code,
      ...(err.detail === undefined ? {} : { detail: err.detail }),
      ...(typeof field === 'string' ? { field } : {}),
    };
  }
  return { code: fallback, detail: err instanceof Error ? err.message : String(err) };
}

async function load(modelDir: string, intraOpThreads: number, warmup: boolean): Promise<void> {
  const started = performance.now();
  try {
    const files = inspectModelDir(modelDir);
    const config = readModelConfig(files);
    const codec = TextCodec.fromModelFiles(files, config);
    const decoder = await DecoderSession.create(files, config, { intraOpThreads });
    send({ t: 'session-created' });
    const loadSeconds = (performance.now() - started) / 1000;
    loaded = { files, config, codec, decoder, loop: new GenerationLoop(decoder, codec) };
    send({ t: 'state', state: 'warming' });
    const warmStarted = performance.now();
    if (warmup) {
      try {
        // Two tokens exercise the prefill and one cached step.
        const warmIds = codec.encodePrompt('hello');
        await loaded.loop.generate(warmIds.length > 0 ? warmIds : [0], {
          maxTokens: 2, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [], ignoreEos: true,
        });
      } catch (cause) {
        throw Object.assign(new Error(cause instanceof Error ? cause.message : String(cause)), { warmup: true });
      }
    }
    send({
      t: 'loaded',
      info: {
        dir: files.dir,
        contextLength: config.contextLength,
        contextLengthSource: config.contextLengthSource,
        modelType: config.modelType,
        layers: decoder.signature.layers,
        inputNames: decoder.signature.inputNames,
        weightBytes: files.weightBytes,
        loadSeconds,
        warmupSeconds: (performance.now() - warmStarted) / 1000,
      },
    });
  } catch (err) {
    const fallback = (err as { warmup?: boolean }).warmup ? 'MODEL-LOAD-106' : 'MODEL-LOAD-101';
    send({ t: 'load-failed', error: serialize(err, fallback) });
  }
}

async function generate(id: number, requestId: string, request: EngineRequest): Promise<void> {
  if (!loaded) {
    send({ t: 'failed', id, error: { code: 'MODEL-REQ-208' } });
    return;
  }
  const { codec, config, files, loop } = loaded;
  active.add(id);
  try {
    const promptIds = 'messages' in request.input ? codec.encodeChat(request.input.messages) : codec.encodePrompt(request.input.prompt);
    if (promptIds.length === 0) {
      const detail = 'the prompt encodes to no tokens, and the model has no BOS token to start from';
      send({ t: 'failed', id, error: { code: 'MODEL-REQ-203', detail, field: 'messages' in request.input ? 'messages' : 'prompt' } });
      return;
    }
    const params = resolveGeneration(request, config, files.generationConfig, promptIds.length);
    send({ t: 'started', id, promptTokens: promptIds.length });
    let tokens = 0;
    // Deltas are coalesced: the first goes at once (time to first token), later ones at most
    // every STREAM_FLUSH_MS, because a message per token costs the worker more than the token.
    let buffered = '';
    let lastFlush = -Infinity;
    const flush = (): void => {
      if (buffered) send({ t: 'delta', id, text: buffered, tokens });
      buffered = '';
      lastFlush = performance.now();
    };
    const out = await loop.generate(promptIds, params, {
      isCancelled: () => cancelled.has(id),
      onToken: (text, tokenIndex) => {
        // The first token marks time to first token even when its text is held back.
        if (tokens === 0) send({ t: 'first-token', id });
        tokens = tokenIndex + 1;
        if (request.stream) {
          buffered += text;
          if (buffered && performance.now() - lastFlush >= STREAM_FLUSH_MS) flush();
        }
      },
    });
    if (request.stream) flush();
    send({
      t: 'done',
      id,
      text: out.text,
      promptTokens: promptIds.length,
      completionTokens: out.tokenIds.length,
      finishReason: out.finishReason,
    });
    send({
      t: 'log',
      level: 'debug',
      section: 'RESP',
      message: 'generation ended',
      meta: { requestId, tokens: out.tokenIds.length, finishReason: out.finishReason },
    });
  } catch (err) {
    send({ t: 'failed', id, error: serialize(err, 'MODEL-RESP-301') });
  } finally {
    active.delete(id);
    cancelled.delete(id);
  }
}

/** Cancels everything running and asks V8 for a full collection so the cache tensors go now. */
function freeCaches(): void {
  const count = active.size;
  for (const id of active) cancelled.add(id);
  setImmediate(() => {
    collectGarbage();
    send({ t: 'caches-freed', cancelled: count });
  });
}

function collectGarbage(): void {
  try {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  } catch {
    // Best effort: without gc the tensors are freed at the next natural collection.
  }
}

port.on('message', (message: ToWorker) => {
  switch (message.t) {
    case 'load':
      void load(message.modelDir, message.intraOpThreads, message.warmup);
      break;
    case 'generate':
      void generate(message.id, message.requestId, message.request);
      break;
    case 'cancel':
      if (active.has(message.id)) cancelled.add(message.id);
      break;
    case 'free-caches':
      freeCaches();
      break;
  }
});
