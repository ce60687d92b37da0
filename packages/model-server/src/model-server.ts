import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ConclaveError, isConclaveError, type Logger } from '@conclave/common';
import { ApiKeys } from './api-keys.js';
import type { Engine, EngineState, GenerationResult } from './engine.js';
import type { EngineRequest } from './engine-protocol.js';
import { EngineRegistry } from './engine-registry.js';
import { SseWriter, errorBody, asConclaveError, readJsonBody, sendError, sendJson } from './http-io.js';
import { MemoryGuard } from './memory-guard.js';
import type { MemorySample } from './memory-probe.js';
import { ModelServerMetrics } from './metrics.js';
import { inspectModelDir, type ModelFiles } from './model-files.js';
import { resolveModelServerOptions, type ModelServerOptions, type ResolvedModelServerOptions } from './model-server-options.js';
import { parseCompletionCall, type CompletionCall } from './openai-request.js';
import { RequestQueue } from './request-queue.js';
import type { ChatMessage } from './text-codec.js';

/** A generation asked for in-process (the fleet's node session uses this). */
export interface ModelGenerateRequest {
  prompt?: string;
  messages?: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
  /** Correlation id for the log lines; generated when absent. */
  requestId?: string;
}

export interface ModelGenerateResult {
  text: string;
  finishReason: 'stop' | 'length';
  usage: GenerationResult['usage'];
}

/** A running model server. */
export interface ModelServerHandle {
  /** `http://host:port` */
  readonly url: string;
  readonly port: number;
  readonly modelId: string;
  /** The engine's lifecycle; `unloaded` before the first load starts. */
  readonly state: EngineState;
  /** Resolves when the model is loaded and warmed up; rejects with the MODEL-LOAD error. */
  readonly ready: Promise<void>;
  readonly metrics: ModelServerMetrics;
  /** Generates through the same queue, limits and memory guard as HTTP requests. */
  generate(request: ModelGenerateRequest, signal?: AbortSignal): Promise<ModelGenerateResult>;
  /** Stops accepting, cancels running generations, disposes the engine, closes the listener. */
  close(): Promise<void>;
}

interface ActiveRequest {
  readonly controller: AbortController;
  readonly startedAt: number;
}

interface ExecuteContext {
  requestId: string;
  log: Logger;
  arrival: number;
  signal?: AbortSignal;
  onDelta?: (text: string) => void;
  onFirstToken?: () => void;
}

const REQUEST_ID_PATTERN = /^[\w.:-]{1,128}$/;

/**
 * Starts the text model server: checks the model directory (throws MODEL-LOAD-102/103
 * at once), listens, and loads the model in the background; /health turns 200 once
 * the model is loaded and warmed up.
 */
export async function startModelServer(options: ModelServerOptions = {}): Promise<ModelServerHandle> {
  const o = resolveModelServerOptions(options);
  const files = inspectModelDir(o.modelDir);
  const server = new ModelServer(o, files);
  await server.listen();
  return server.handle();
}

class ModelServer {
  private readonly log: Logger;
  private readonly metrics = new ModelServerMetrics();
  private readonly queue: RequestQueue;
  private readonly keys: ApiKeys;
  private readonly engines: EngineRegistry;
  private readonly guard: MemoryGuard;
  private readonly http: Server;
  private readonly active = new Set<ActiveRequest>();
  private engineState: EngineState = 'unloaded';
  private enginePromise: Promise<Engine> | undefined;
  private engine: Engine | undefined;
  private loadError: ConclaveError | undefined;
  private draining = false;
  private recovering = false;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (err: unknown) => void;

  constructor(
    private readonly o: ResolvedModelServerOptions,
    private readonly files: ModelFiles,
  ) {
    this.log = o.logger.child({ model: o.modelId });
    this.queue = new RequestQueue(o.concurrency, o.queueLimit);
    this.keys = new ApiKeys(o.apiKeys);
    this.engines =
      o.engines ??
      new EngineRegistry(this.log, {
        onSessionsChange: (key, n) => this.metrics.sessionsLoaded.set({ model: key }, n),
        onSessionCreated: (key) => this.metrics.sessionsCreated.inc({ model: key }),
      });
    this.guard = new MemoryGuard({
      probe: o.memory.probe,
      logger: this.log,
      softThreshold: o.memory.softThreshold,
      hardThreshold: o.memory.hardThreshold,
      marginBytes: o.memory.marginBytes,
      sampleIntervalMs: o.memory.sampleIntervalMs,
      summaryIntervalMs: o.memory.summaryIntervalMs,
      onHard: (sample) => void this.emergency(sample),
    });
    this.readyPromise = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Nobody may be waiting on ready(); the failure is logged and visible on /health.
    this.readyPromise.catch(() => {});
    this.http = createServer((req, res) => void this.onRequest(req, res));
    this.metrics.sessionsLoaded.set({ model: files.dir }, 0);
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.o.port, this.o.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    if (!this.keys.enabled) this.log.warn('AUTH', 'no API keys configured: the API is open');
    this.log.info('REQ', 'model server listening', {
      url: this.url,
      modelDir: this.files.dir,
      demo: this.o.isDemo,
      concurrency: this.o.concurrency,
      queueLimit: this.o.queueLimit,
      auth: this.keys.enabled,
    });
    this.guard.start();
    // Failures land in loadError, /health and `ready`; nothing awaits the promise here.
    void this.load().catch(() => {});
  }

  get url(): string {
    const { port } = this.http.address() as AddressInfo;
    const host = this.o.host.includes(':') ? `[${this.o.host}]` : this.o.host;
    return `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
  }

  handle(): ModelServerHandle {
    const state = (): EngineState => this.engineState;
    return {
      url: this.url,
      port: (this.http.address() as AddressInfo).port,
      modelId: this.o.modelId,
      get state() {
        return state();
      },
      ready: this.readyPromise,
      metrics: this.metrics,
      generate: (request, signal) => this.generateInProcess(request, signal),
      close: () => this.close(),
    };
  }

  /** Starts the single-flight load (or joins the one running). */
  private load(): Promise<Engine> {
    if (this.enginePromise) return this.enginePromise;
    this.loadError = undefined;
    const promise = this.engines.acquire(this.files, {
      memoryProbe: this.o.memory.probe,
      loadOverhead: this.o.memory.loadOverhead,
      memoryMarginBytes: this.o.memory.marginBytes,
      intraOpThreads: this.o.intraOpThreads,
      warmup: this.o.warmup,
      onStateChange: (state) => {
        this.engineState = state;
      },
      onCrash: (err) => {
        this.log.failure(err);
        this.engine = undefined;
        this.enginePromise = undefined;
        this.engineState = 'unloaded';
        if (!this.draining) void this.load().catch(() => {});
      },
    });
    this.enginePromise = promise;
    this.engineState = 'loading';
    promise.then(
      (engine) => {
        this.engine = engine;
        this.engineState = engine.state;
        this.metrics.loadSeconds.set({ model: this.files.dir }, engine.info.loadSeconds);
        this.log.info('LOAD', 'model ready', {
          loadSeconds: round3(engine.info.loadSeconds),
          warmupSeconds: round3(engine.info.warmupSeconds),
          weightBytes: engine.info.weightBytes,
          contextLength: engine.info.contextLength,
          kvLayers: engine.info.layers,
        });
        this.resolveReady();
      },
      (err: unknown) => {
        this.loadError = asConclaveError(err);
        this.engineState = 'failed';
        if (this.enginePromise === promise) this.enginePromise = undefined;
        this.log.failure(this.loadError);
        this.rejectReady(this.loadError);
      },
    );
    return promise;
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const header = req.headers['x-request-id'];
    const requestId = typeof header === 'string' && REQUEST_ID_PATTERN.test(header) ? header : `req-${randomUUID()}`;
    const log = this.log.child({ requestId });
    res.setHeader('x-request-id', requestId);
    const arrival = performance.now();
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = `${req.method ?? 'GET'} ${path}`;
    let status = 200;
    try {
      if (route === 'GET /health') status = this.health(res);
      else if (route === 'GET /metrics') await this.sendMetrics(res);
      else if (path.startsWith('/v1/')) {
        if (!this.keys.verify(req.headers.authorization)) throw new ConclaveError('MODEL-AUTH-501');
        if (route === 'GET /v1/models') sendJson(res, 200, { object: 'list', data: [this.modelCard()] });
        else if (route === `GET /v1/models/${this.o.modelId}`) sendJson(res, 200, this.modelCard());
        else if (route.startsWith('GET /v1/models/')) throw new ConclaveError('MODEL-REQ-205', { detail: path.slice('/v1/models/'.length) });
        else if (route === 'POST /v1/chat/completions') await this.completion(req, res, 'chat', { requestId, log, arrival });
        else if (route === 'POST /v1/completions') await this.completion(req, res, 'text', { requestId, log, arrival });
        else throw new ConclaveError('MODEL-REQ-206', { detail: route });
      } else throw new ConclaveError('MODEL-REQ-206', { detail: route });
      status = res.statusCode;
    } catch (err) {
      status = sendError(res, err, log, this.o.retryAfterSeconds);
      // A body we did not read keeps the socket busy; drain it so keep-alive clients are not stuck.
      if (!req.complete) req.resume();
    }
    this.metrics.requests.inc({ route: routeLabel(path), status: String(status) });
  }

  private modelCard(): Record<string, unknown> {
    return {
      id: this.o.modelId,
      object: 'model',
      created: 0,
      owned_by: this.o.isDemo ? 'conclave (demo model)' : 'conclave',
    };
  }

  private health(res: ServerResponse): number {
    const state = this.engineState;
    const base = { model: this.o.modelId, state, demo: this.o.isDemo, memory: this.guard.level };
    if (!this.draining && state === 'ready') {
      sendJson(res, 200, { status: 'ok', ...base });
      return 200;
    }
    const err = this.draining
      ? new ConclaveError('MODEL-HEALTH-903')
      : state === 'failed' && this.loadError
        ? new ConclaveError('MODEL-HEALTH-902', { detail: `${this.loadError.code} ${this.loadError.message}` })
        : new ConclaveError('MODEL-HEALTH-901', { detail: state });
    const { body } = errorBody(err);
    sendJson(res, 503, { ...body, status: 'unavailable', ...base }, { 'retry-after': String(this.o.retryAfterSeconds) });
    return 503;
  }

  private async sendMetrics(res: ServerResponse): Promise<void> {
    this.metrics.inFlight.set(this.queue.running);
    this.metrics.waiting.set(this.queue.waiting);
    this.metrics.memoryRatio.set(this.guard.ratio());
    const text = await this.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
    res.end(text);
  }

  private async completion(req: IncomingMessage, res: ServerResponse, kind: 'chat' | 'text', ctx: ExecuteContext): Promise<void> {
    const body = await readJsonBody(req, this.o.maxBodyBytes);
    const call = parseCompletionCall(body, kind, this.o.maxTokensLimit);
    if (call.model !== this.o.modelId) {
      throw new ConclaveError('MODEL-REQ-205', { detail: `${call.model} (this server serves ${this.o.modelId})`, data: { field: 'model' } });
    }
    // A client that goes away stops its generation at once (before the next forward pass).
    const disconnect = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) disconnect.abort(new ConclaveError('MODEL-REQ-210'));
    });
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${ctx.requestId}`;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    if (!call.stream) {
      const result = await this.execute(call.request, { ...ctx, signal: disconnect.signal });
      sendJson(res, 200, {
        id,
        object,
        created,
        model: this.o.modelId,
        choices: [
          kind === 'chat'
            ? { index: 0, message: { role: 'assistant', content: result.text }, finish_reason: result.finishReason, logprobs: null }
            : { index: 0, text: result.text, finish_reason: result.finishReason, logprobs: null },
        ],
        usage: result.usage,
      });
      return;
    }
    await this.stream(res, call, { ...ctx, signal: disconnect.signal }, { id, created });
  }

  private async stream(res: ServerResponse, call: CompletionCall, ctx: ExecuteContext, ids: { id: string; created: number }): Promise<void> {
    const sse = new SseWriter(res);
    const object = call.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (text: string | undefined, finishReason: string | null, first = false): unknown => ({
      id: ids.id,
      object,
      created: ids.created,
      model: this.o.modelId,
      choices: [
        call.kind === 'chat'
          ? { index: 0, delta: first ? { role: 'assistant', content: '' } : text === undefined ? {} : { content: text }, finish_reason: finishReason, logprobs: null }
          : { index: 0, text: text ?? '', finish_reason: finishReason, logprobs: null },
      ],
      ...(call.streamUsage ? { usage: null } : {}),
    });
    // Headers go out only once the request is admitted, so refusals (429/503) keep their status code.
    let opened = false;
    const open = (): void => {
      if (opened) return;
      opened = true;
      sse.open({ 'x-request-id': ctx.requestId });
      if (call.kind === 'chat') sse.send(chunk(undefined, null, true));
    };
    const result = await this.execute(call.request, {
      ...ctx,
      onFirstToken: open,
      onDelta: (text) => {
        open();
        sse.send(chunk(text, null));
      },
    });
    open();
    sse.send(chunk(undefined, result.finishReason));
    if (call.streamUsage) sse.send({ id: ids.id, object, created: ids.created, model: this.o.modelId, choices: [], usage: result.usage });
    sse.done();
  }

  private async generateInProcess(request: ModelGenerateRequest, signal?: AbortSignal): Promise<ModelGenerateResult> {
    const requestId = request.requestId ?? `gen-${randomUUID()}`;
    const log = this.log.child({ requestId });
    let input: EngineRequest['input'];
    if (request.messages && request.messages.length > 0) input = { messages: request.messages };
    else if (typeof request.prompt === 'string' && request.prompt.trim() !== '') input = { prompt: request.prompt };
    else throw new ConclaveError('MODEL-REQ-203', { detail: 'prompt or messages required', data: { field: 'prompt' } });
    const engineRequest: EngineRequest = { input, stream: false };
    if (request.maxTokens !== undefined) engineRequest.maxTokens = request.maxTokens;
    if (request.temperature !== undefined) engineRequest.temperature = request.temperature;
    if (request.topP !== undefined) engineRequest.topP = request.topP;
    if (request.topK !== undefined) engineRequest.topK = request.topK;
    if (request.seed !== undefined) engineRequest.seed = request.seed;
    if (request.stop !== undefined) engineRequest.stop = request.stop;
    try {
      const result = await this.execute(engineRequest, { requestId, log, arrival: performance.now(), ...(signal ? { signal } : {}) });
      return { text: result.text, finishReason: result.finishReason === 'cancelled' ? 'stop' : result.finishReason, usage: result.usage };
    } catch (err) {
      log.failure(err, {}, 'warn');
      throw err;
    }
  }

  /** Admission, queueing, limits and metrics around one engine generation. */
  private async execute(request: EngineRequest, ctx: ExecuteContext): Promise<GenerationResult> {
    if (this.draining) throw new ConclaveError('MODEL-HEALTH-903');
    const level = this.guard.check();
    if (level !== 'ok') {
      throw new ConclaveError('MODEL-MEM-401', { detail: `memory at ${Math.round(this.guard.ratio() * 100)}% (${level})` });
    }
    if (this.engineState !== 'ready' && this.o.whileLoading === 'reject') {
      if (this.engineState === 'failed' && this.loadError) {
        throw new ConclaveError('MODEL-REQ-208', { detail: `model failed to load: ${this.loadError.code}` });
      }
      throw new ConclaveError('MODEL-REQ-208', { detail: `model is ${this.engineState}` });
    }
    const controller = new AbortController();
    const entry: ActiveRequest = { controller, startedAt: ctx.arrival };
    // Any abort by the caller is a cancellation (MODEL-REQ-210) unless it already carries a code.
    const onClientAbort = (): void => {
      const reason: unknown = ctx.signal?.reason;
      controller.abort(isConclaveError(reason) ? reason : new ConclaveError('MODEL-REQ-210', { cause: reason }));
    };
    if (ctx.signal?.aborted) onClientAbort();
    ctx.signal?.addEventListener('abort', onClientAbort, { once: true });
    const timer = setTimeout(
      () => controller.abort(new ConclaveError('MODEL-REQ-209', { detail: `after ${this.o.requestTimeoutMs} ms` })),
      this.o.requestTimeoutMs,
    );
    this.active.add(entry);
    let release: (() => void) | undefined;
    let firstTokenAt: number | undefined;
    try {
      this.metrics.waiting.set(this.queue.waiting + 1);
      release = await this.queue.acquire(controller.signal);
      this.metrics.queueTime.observe((performance.now() - ctx.arrival) / 1000);
      this.metrics.inFlight.set(this.queue.running);
      this.metrics.waiting.set(this.queue.waiting);
      const engine = await this.readyEngine(controller.signal);
      const sample = this.guard.sample;
      ctx.log.debug('MEM', 'request memory', { phase: 'start', rssBytes: sample.rssBytes, ratio: round3(this.guard.ratio()) });
      const result = await engine.generate(request, {
        requestId: ctx.requestId,
        signal: controller.signal,
        onStarted: (promptTokens) => ctx.log.debug('REQ', 'generation started', { promptTokens }),
        onFirstToken: () => {
          firstTokenAt = performance.now();
          this.metrics.timeToFirstToken.observe((firstTokenAt - ctx.arrival) / 1000);
          ctx.onFirstToken?.();
        },
        ...(ctx.onDelta ? { onDelta: ctx.onDelta } : {}),
      });
      const end = performance.now();
      const completion = result.usage.completion_tokens;
      this.metrics.tokensGenerated.inc(completion);
      this.metrics.promptTokens.inc(result.usage.prompt_tokens);
      if (firstTokenAt !== undefined && completion > 1) {
        this.metrics.timePerOutputToken.observe((end - firstTokenAt) / 1000 / (completion - 1));
      }
      ctx.log.info('RESP', 'generation completed', {
        promptTokens: result.usage.prompt_tokens,
        completionTokens: completion,
        finishReason: result.finishReason,
        ms: Math.round(end - ctx.arrival),
      });
      ctx.log.debug('MEM', 'request memory', { phase: 'end', rssBytes: process.memoryUsage.rss(), ratio: round3(this.guard.ratio()) });
      return result;
    } catch (err) {
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      if (controller.signal.aborted && isConclaveError(reason)) {
        this.metrics.cancelled.inc({ reason: cancelReason(reason.code) });
        ctx.log.info('RESP', 'generation stopped', { code: reason.code });
      }
      throw reason;
    } finally {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onClientAbort);
      this.active.delete(entry);
      release?.();
      this.metrics.inFlight.set(this.queue.running);
      this.metrics.waiting.set(this.queue.waiting);
    }
  }

  /** The ready engine; in `wait` mode, waits for a load in progress. */
  private async readyEngine(signal: AbortSignal): Promise<Engine> {
    if (this.engine && this.engineState === 'ready') return this.engine;
    if (this.o.whileLoading === 'reject') throw new ConclaveError('MODEL-REQ-208', { detail: `model is ${this.engineState}` });
    // A load that failed for good (bad file, bad signature) is not retried per request.
    if (this.loadError && !this.loadError.entry.retryable) {
      throw new ConclaveError('MODEL-REQ-208', { detail: `model failed to load: ${this.loadError.code}` });
    }
    const loading = this.load();
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    aborted.catch(() => {});
    return Promise.race([loading, aborted]);
  }

  /**
   * Hard threshold: cancel the newest half of the running requests (they have
   * the least work to lose), free KV caches, and if memory is still above the
   * hard threshold after the grace period, cancel the rest and recycle the worker.
   */
  private async emergency(sample: MemorySample): Promise<void> {
    if (this.recovering || this.draining) return;
    this.recovering = true;
    try {
      const newestFirst = [...this.active].sort((a, b) => b.startedAt - a.startedAt);
      const victims = newestFirst.slice(0, Math.ceil(newestFirst.length / 2));
      this.log.warn('MEM', 'emergency recovery', {
        ratio: round3(sample.usedBytes / sample.limitBytes),
        running: newestFirst.length,
        cancelling: victims.length,
      });
      for (const v of victims) v.controller.abort(new ConclaveError('MODEL-MEM-402'));
      const freed = (await this.engine?.freeCaches()) ?? 0;
      this.log.info('CLEAN', 'KV caches freed', { generationsStopped: freed });
      await new Promise((r) => setTimeout(r, this.o.memory.recoveryGraceMs));
      if (this.draining || this.guard.check() !== 'hard') return;
      for (const a of this.active) a.controller.abort(new ConclaveError('MODEL-MEM-402'));
      this.log.failure(new ConclaveError('MODEL-MEM-403', { detail: `memory at ${Math.round(this.guard.ratio() * 100)}%` }));
      await this.recycle();
    } finally {
      this.recovering = false;
    }
  }

  private async recycle(): Promise<void> {
    this.engine = undefined;
    this.enginePromise = undefined;
    this.engineState = 'draining';
    await this.engines.release(this.files.dir);
    this.engineState = 'unloaded';
    if (!this.draining) await this.load().catch(() => {});
  }

  async close(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.log.info('CLEAN', 'model server closing', { running: this.active.size });
    this.guard.stop();
    for (const a of this.active) a.controller.abort(new ConclaveError('MODEL-HEALTH-903'));
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeAllConnections();
    await closed;
    if (this.o.engines) {
      // A shared registry outlives this server; the owner releases it.
    } else {
      await this.engines.releaseAll();
    }
    this.log.info('CLEAN', 'model server closed');
  }
}

function routeLabel(path: string): string {
  if (path === '/health' || path === '/metrics' || path === '/v1/models' || path === '/v1/chat/completions' || path === '/v1/completions') return path;
  return path.startsWith('/v1/models/') ? '/v1/models/:id' : 'other';
}

function cancelReason(code: string): string {
  if (code === 'MODEL-REQ-210') return 'client_disconnect';
  if (code === 'MODEL-REQ-209') return 'timeout';
  if (code === 'MODEL-MEM-402') return 'memory_emergency';
  if (code === 'MODEL-HEALTH-903') return 'shutdown';
  return 'other';
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
