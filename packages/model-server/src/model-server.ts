import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ConclaveError, isConclaveError, listenOrFail, type Logger } from '@conclave/common';
import { ApiKeys } from './api-keys.js';
import type { EngineState, GenerationResult } from './engine.js';
import type { EngineRequest } from './engine-protocol.js';
import { EngineRegistry } from './engine-registry.js';
import { SseWriter, errorBody, readJsonBody, sendError, sendJson } from './http-io.js';
import { MemoryGuard } from './memory-guard.js';
import type { MemorySample } from './memory-probe.js';
import { ModelServerMetrics } from './metrics.js';
import { inspectModelDir, type ModelFiles } from './model-files.js';
import { resolveModelServerOptions, type ModelServerOptions, type ResolvedModelServerOptions } from './model-server-options.js';
import { listModelsDir, type ModelsDirEntry } from './models-dir.js';
import { parseCompletionCall, type CompletionCall } from './openai-request.js';
import { RequestQueue } from './request-queue.js';
import { ServedModel } from './served-model.js';
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
  /** The fleet job this generation serves: its lines carry it, so `orchestrator logs --job` shows them. */
  jobId?: string;
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
  /** The default model's id (`--model` or the demo). */
  readonly modelId: string;
  /** The default model's engine lifecycle; `unloaded` before the first load starts. */
  readonly state: EngineState;
  /** Resolves when the default model is loaded and warmed up; rejects with the MODEL-LOAD error. */
  readonly ready: Promise<void>;
  readonly metrics: ModelServerMetrics;
  /** Generates with the default model through the same queue, limits and memory guard as HTTP requests. */
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
  /** Tagged with the request id, and with the model once the request named one. */
  log: Logger;
  arrival: number;
  signal?: AbortSignal;
  onDelta?: (text: string) => void;
  onFirstToken?: () => void;
}

const REQUEST_ID_PATTERN = /^[\w.:-]{1,128}$/;

/**
 * Starts the text model server: checks the default model's directory (throws
 * MODEL-LOAD-102/103 at once) and that `modelsDir` is a directory (MODEL-STATE-703),
 * listens, and loads the default model in the background; /health turns 200 once it
 * is loaded and warmed up. Models under `modelsDir` load on first use.
 */
export async function startModelServer(options: ModelServerOptions = {}): Promise<ModelServerHandle> {
  const o = resolveModelServerOptions(options);
  const files = inspectModelDir(o.modelDir);
  const entries = o.modelsDir === undefined ? [] : listModelsDir(o.modelsDir);
  const server = new ModelServer(o, files, entries);
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
  /** The default model: `--model` or the demo, loaded at start; /health reports it. */
  private readonly defaultModel: ServedModel;
  /** The `--models-dir` entries by id, loaded on first use; rescanned when a request names an unknown id. */
  private readonly lazyModels = new Map<string, ServedModel>();
  /** Subdirectories shadowed by the default model's id, warned about once. */
  private readonly shadowed = new Set<string>();
  private draining = false;
  private recovering = false;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (err: unknown) => void;

  constructor(
    private readonly o: ResolvedModelServerOptions,
    private readonly files: ModelFiles,
    entries: readonly ModelsDirEntry[],
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
    this.http = createServer(
      { keepAliveTimeout: o.keepAliveTimeoutMs, headersTimeout: o.headersTimeoutMs },
      (req, res) => void this.onRequest(req, res),
    );
    this.metrics.sessionsLoaded.set({ model: files.dir }, 0);
    this.defaultModel = new ServedModel({
      id: o.modelId,
      dir: files.dir,
      files,
      lazy: false,
      waits: o.whileLoading === 'wait',
      engines: this.engines,
      engineOptions: this.engineOptions(),
      metrics: this.metrics,
      logger: o.logger,
      onLoaded: () => this.resolveReady(),
      onLoadFailed: (err) => this.rejectReady(err),
    });
    this.addLazyModels(entries);
  }

  private engineOptions(): ConstructorParameters<typeof ServedModel>[0]['engineOptions'] {
    return {
      memoryProbe: this.o.memory.probe,
      loadOverhead: this.o.memory.loadOverhead,
      memoryMarginBytes: this.o.memory.marginBytes,
      intraOpThreads: this.o.intraOpThreads,
      warmup: this.o.warmup,
    };
  }

  /**
   * Adds the `--models-dir` entries not known yet and forgets those whose directory
   * is gone (unless they hold a session). Nothing is loaded here.
   */
  private addLazyModels(entries: readonly ModelsDirEntry[]): void {
    const seen = new Set<string>();
    for (const { id, dir } of entries) {
      if (id === this.o.modelId) {
        if (!this.shadowed.has(id)) this.log.warn('STATE', 'models-dir entry has the default model id: not served', { id, dir });
        this.shadowed.add(id);
        continue;
      }
      seen.add(id);
      if (this.lazyModels.has(id)) continue;
      this.lazyModels.set(
        id,
        new ServedModel({
          id,
          dir,
          lazy: true,
          waits: true,
          engines: this.engines,
          engineOptions: this.engineOptions(),
          metrics: this.metrics,
          logger: this.o.logger,
        }),
      );
    }
    for (const [id, model] of this.lazyModels) {
      if (!seen.has(id) && !model.holdsEngine) this.lazyModels.delete(id);
    }
  }

  /** Rescans `--models-dir` (a readdir); a directory that vanished meanwhile lists nothing new. */
  private rescan(): void {
    if (this.o.modelsDir === undefined) return;
    try {
      this.addLazyModels(listModelsDir(this.o.modelsDir));
    } catch (err) {
      this.log.failure(err, {}, 'warn');
    }
  }

  private models(): ServedModel[] {
    return [this.defaultModel, ...this.lazyModels.values()];
  }

  /** The model a request names; MODEL-REQ-205 listing the ids served otherwise. */
  private modelNamed(id: string): ServedModel {
    if (id === this.o.modelId) return this.defaultModel;
    let model = this.lazyModels.get(id);
    if (!model) {
      this.rescan();
      model = this.lazyModels.get(id);
    }
    if (!model) {
      const ids = this.models().map((m) => m.id);
      throw new ConclaveError('MODEL-REQ-205', { detail: `${id} (available: ${ids.join(', ')})`, data: { field: 'model', available: ids } });
    }
    return model;
  }

  async listen(): Promise<void> {
    await listenOrFail(this.http, { port: this.o.port, host: this.o.host, errorCode: 'MODEL-NET-604', listener: 'HTTP' });
    if (!this.keys.enabled) this.log.warn('AUTH', 'no API keys configured: the API is open');
    this.log.info('REQ', 'model server listening', {
      url: this.url,
      modelDir: this.files.dir,
      demo: this.o.isDemo,
      ...(this.o.modelsDir === undefined ? {} : { modelsDir: this.o.modelsDir, lazyModels: [...this.lazyModels.keys()] }),
      concurrency: this.o.concurrency,
      queueLimit: this.o.queueLimit,
      auth: this.keys.enabled,
    });
    this.guard.start();
    // Failures land in the model's loadError, /health and `ready`; nothing awaits the promise here.
    void this.defaultModel.load().catch(() => {});
  }

  get url(): string {
    const { port } = this.http.address() as AddressInfo;
    const host = this.o.host.includes(':') ? `[${this.o.host}]` : this.o.host;
    return `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
  }

  handle(): ModelServerHandle {
    const state = (): EngineState => this.defaultModel.state;
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

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const header = req.headers['x-request-id'];
    const requestId = typeof header === 'string' && REQUEST_ID_PATTERN.test(header) ? header : `req-${randomUUID()}`;
    const ctx: ExecuteContext = { requestId, log: this.log.child({ requestId }), arrival: performance.now() };
    res.setHeader('x-request-id', requestId);
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = `${req.method ?? 'GET'} ${path}`;
    let status = 200;
    try {
      if (route === 'GET /health') status = this.health(res);
      else if (route === 'GET /metrics') await this.sendMetrics(res);
      else if (path.startsWith('/v1/')) {
        if (!this.keys.verify(req.headers.authorization)) throw new ConclaveError('MODEL-AUTH-501');
        if (route === 'GET /v1/models') {
          this.rescan();
          sendJson(res, 200, { object: 'list', data: this.models().map((m) => this.modelCard(m)) });
        } else if (route.startsWith('GET /v1/models/')) sendJson(res, 200, this.modelCard(this.modelNamed(decodeId(path.slice('/v1/models/'.length)))));
        else if (route === 'POST /v1/chat/completions') await this.completion(req, res, 'chat', ctx);
        else if (route === 'POST /v1/completions') await this.completion(req, res, 'text', ctx);
        else throw new ConclaveError('MODEL-REQ-206', { detail: route });
      } else throw new ConclaveError('MODEL-REQ-206', { detail: route });
      status = res.statusCode;
    } catch (err) {
      status = sendError(res, err, ctx.log, this.o.retryAfterSeconds);
      // A body we did not read keeps the socket busy; drain it so keep-alive clients are not stuck.
      if (!req.complete) req.resume();
    }
    this.metrics.requests.inc({ route: routeLabel(path), status: String(status) });
  }

  /**
   * An OpenAI model object plus, once loaded, vLLM's `max_model_len`, and `conclave: {state, error?,
   * modelType?, contextLengthSource?}` (clients ignore unknown fields).
   */
  private modelCard(model: ServedModel): Record<string, unknown> {
    const error = model.availability === 'failed' ? model.loadError : undefined;
    const info = model.readyNow?.info;
    return {
      id: model.id,
      object: 'model',
      created: 0,
      owned_by: model === this.defaultModel && this.o.isDemo ? 'conclave (demo model)' : 'conclave',
      ...(info ? { max_model_len: info.contextLength } : {}),
      conclave: {
        state: model.availability,
        ...(error ? { error: { code: error.code, message: error.message } } : {}),
        ...(info ? { modelType: info.modelType ?? null, contextLengthSource: info.contextLengthSource } : {}),
      },
    };
  }

  private health(res: ServerResponse): number {
    const state = this.defaultModel.state;
    const loadError = this.defaultModel.loadError;
    const base = { model: this.o.modelId, state, demo: this.o.isDemo, memory: this.guard.level };
    if (!this.draining && state === 'ready') {
      sendJson(res, 200, { status: 'ok', ...base });
      return 200;
    }
    const err = this.draining
      ? new ConclaveError('MODEL-HEALTH-903')
      : state === 'failed' && loadError
        ? new ConclaveError('MODEL-HEALTH-902', { detail: `${loadError.code} ${loadError.message}` })
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
    const model = this.modelNamed(call.model);
    if (model !== this.defaultModel) ctx.log = model.log.child({ requestId: ctx.requestId });
    // A client that goes away stops its generation at once (before the next forward pass).
    const disconnect = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) disconnect.abort(new ConclaveError('MODEL-REQ-210'));
    });
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${ctx.requestId}`;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    if (!call.stream) {
      const result = await this.execute(model, call.request, { ...ctx, signal: disconnect.signal });
      sendJson(res, 200, {
        id,
        object,
        created,
        model: model.id,
        choices: [
          kind === 'chat'
            ? { index: 0, message: { role: 'assistant', content: result.text }, finish_reason: result.finishReason, logprobs: null }
            : { index: 0, text: result.text, finish_reason: result.finishReason, logprobs: null },
        ],
        usage: result.usage,
      });
      return;
    }
    await this.stream(res, model, call, { ...ctx, signal: disconnect.signal }, { id, created });
  }

  private async stream(
    res: ServerResponse,
    model: ServedModel,
    call: CompletionCall,
    ctx: ExecuteContext,
    ids: { id: string; created: number },
  ): Promise<void> {
    const sse = new SseWriter(res);
    const object = call.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (text: string | undefined, finishReason: string | null, first = false): unknown => ({
      id: ids.id,
      object,
      created: ids.created,
      model: model.id,
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
    const result = await this.execute(model, call.request, {
      ...ctx,
      onFirstToken: open,
      onDelta: (text) => {
        open();
        sse.send(chunk(text, null));
      },
    });
    open();
    sse.send(chunk(undefined, result.finishReason));
    if (call.streamUsage) sse.send({ id: ids.id, object, created: ids.created, model: model.id, choices: [], usage: result.usage });
    sse.done();
  }

  private async generateInProcess(request: ModelGenerateRequest, signal?: AbortSignal): Promise<ModelGenerateResult> {
    const requestId = request.requestId ?? `gen-${randomUUID()}`;
    const log = this.log.child({ requestId, ...(request.jobId ? { jobId: request.jobId } : {}) });
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
      const result = await this.execute(this.defaultModel, engineRequest, { requestId, log, arrival: performance.now(), ...(signal ? { signal } : {}) });
      return { text: result.text, finishReason: result.finishReason === 'cancelled' ? 'stop' : result.finishReason, usage: result.usage };
    } catch (err) {
      log.failure(err, {}, 'warn');
      throw err;
    }
  }

  /** Admission, queueing, limits and metrics around one engine generation. */
  private async execute(model: ServedModel, request: EngineRequest, ctx: ExecuteContext): Promise<GenerationResult> {
    if (this.draining) throw new ConclaveError('MODEL-HEALTH-903');
    const level = this.guard.check();
    if (level !== 'ok') {
      throw new ConclaveError('MODEL-MEM-401', { detail: `memory at ${Math.round(this.guard.ratio() * 100)}% (${level})` });
    }
    model.admit();
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
      // A lazy model loads before the request takes a slot: a load never holds slots other models' requests need.
      if (model.lazy) await model.readyEngine(controller.signal);
      this.metrics.waiting.set(this.queue.waiting + 1);
      release = await this.queue.acquire(controller.signal);
      this.metrics.queueTime.observe((performance.now() - ctx.arrival) / 1000);
      this.metrics.inFlight.set(this.queue.running);
      this.metrics.waiting.set(this.queue.waiting);
      const engine = await model.readyEngine(controller.signal);
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

  /**
   * Hard threshold: cancel the newest half of the running requests (they have
   * the least work to lose), free KV caches, and if memory is still above the
   * hard threshold after the grace period, cancel the rest and recycle the workers:
   * the default model loads again, lazy models stay unloaded until named again.
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
      const freed = (await Promise.all(this.models().map((m) => m.freeCaches()))).reduce((a, b) => a + b, 0);
      this.log.info('CLEAN', 'KV caches freed', { generationsStopped: freed });
      await new Promise((r) => setTimeout(r, this.o.memory.recoveryGraceMs));
      if (this.draining || this.guard.check() !== 'hard') return;
      for (const a of this.active) a.controller.abort(new ConclaveError('MODEL-MEM-402'));
      this.log.failure(new ConclaveError('MODEL-MEM-403', { detail: `memory at ${Math.round(this.guard.ratio() * 100)}%` }));
      await Promise.all(this.models().map((m) => m.recycle()));
    } finally {
      this.recovering = false;
    }
  }

  async close(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.log.info('CLEAN', 'model server closing', { running: this.active.size });
    this.guard.stop();
    for (const m of this.models()) m.close();
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

/** A path segment as the id it encodes; a malformed escape is taken literally (and then unknown). */
function decodeId(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
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
