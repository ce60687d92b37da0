import { Backoff, ConclaveError, isConclaveError, type ErrorCode, type Logger } from '@conclave/common';
import {
  elementCount, type AcceleratorInfo, type HailoManifest__Output, type HailoTensorMap__Output, type ModelArtifact__Output,
  type ModelBackendStatus, type SidecarDeviceInfo__Output, type SidecarVstream__Output,
  type TensorSpec, type WireTensor,
} from '@conclave/protocol';
import {
  assertInputsMatch, type BackendModel, type InferenceBackend, type RunOptions, type RunResult,
} from '../inference-backend.js';
import { compareOutputs, describeVerdict, goldenInputs, type Tolerance } from './golden-check.js';
import { INLINE_PART_MAX_MS, InlinePart } from './inline-part.js';
import { RunStats } from './run-stats.js';
import type { SidecarClient, SidecarTensorData } from './sidecar-client.js';
import type { SidecarSupervisor } from './sidecar-supervisor.js';

/** What the backend asks of a connected sidecar. */
export type SidecarCalls = Pick<SidecarClient, 'load' | 'infer' | 'unload'>;

/** The sidecar as the backend sees it: up with a client and the device's facts, or down with a reason. */
export type SidecarSource = Pick<SidecarSupervisor, 'state' | 'client' | 'device' | 'onChange'>;

export interface HailoBackendOptions {
  /** Runs the CPU reference, the pre/post parts and every model that cannot run on the chip. Owned: disposed with this backend. */
  cpu: InferenceBackend;
  sidecar: SidecarSource;
  /** Fetches and verifies one bundle file, resolving to its path in the model store. */
  fetchArtifact: (artifact: ModelArtifact__Output) => Promise<string>;
  logger: Logger;
  /** Detection's facts (PCIe, driver, temperature), read for each report. */
  detected?: () => Partial<AcceleratorInfo>;
  /** Consecutive Hailo timeouts or errors that move a model to the CPU. @default 3 */
  failuresToOpen?: number;
  /** First delay before Hailo is tried again for a model that fell back. @default 1000 */
  retryBaseMs?: number;
  /** @default 60 000 */
  retryCapMs?: number;
  /** How often a model on Hailo runs its golden input again, to catch drift. @default 60 000 */
  recheckIntervalMs?: number;
  /**
   * The longest a HEF call may take, and at most half of a job's deadline: the other half is the
   * CPU's, should the chip fail the job. @default 5000
   */
  inferTimeoutMs?: number;
  /** A pre/post part whose median run takes at most this runs on the agent's thread, not a worker; 0: never. @default INLINE_PART_MAX_MS (0.25) */
  inlinePartMaxMs?: number;
}

interface ResolvedOptions extends Required<Omit<HailoBackendOptions, 'detected'>> {
  detected: () => Partial<AcceleratorInfo>;
}

/** The HEF side of a model that passed its golden check: what to run and how tensors map. */
interface HailoPath {
  /** The connection the HEF was loaded on: a new sidecar has none of the old one's HEFs. */
  readonly client: SidecarCalls;
  readonly manifest: HailoManifest__Output;
  readonly pre?: BackendModel;
  readonly post?: BackendModel;
  /** Set for a part small enough to run on this thread (InlinePart); otherwise it runs on a CPU worker. */
  readonly preInline?: InlinePart;
  readonly postInline?: InlinePart;
  readonly vstreams: ReadonlyMap<string, SidecarVstream__Output>;
  readonly tolerance: Tolerance;
}

interface Route {
  readonly model: BackendModel;
  /** The bundle's files and manifest: a new bundle under the same model.onnx starts a new route. */
  readonly bundleKey: string;
  /** The probe a new model's first job waits for; later probes run beside the jobs. */
  firstProbe?: Promise<void>;
  /** Sidecar deaths while this model's HEF was being tried: twice, and it is not tried again. */
  probeDeaths: number;
  on: 'cpu' | 'hailo';
  reason: string;
  /** Set when retrying cannot help (no HEF for this chip, a manifest that does not fit). */
  final: boolean;
  path?: HailoPath;
  failures: number;
  readonly retry: Backoff;
  retryTimer?: NodeJS.Timeout;
  recheckTimer?: NodeJS.Timeout;
  probing?: Promise<void>;
  readonly stats: { hailo: RunStats; cpu: RunStats };
}

/** Errors after which the chip is not worth another try for this job's model until the sidecar is back. */
const SIDECAR_GONE: ReadonlySet<string> = new Set(['NODE-NET-630', 'NODE-NET-631', 'NODE-NET-632', 'NODE-JOB-821', 'NODE-LOAD-163']);
/** Errors that say the job itself is wrong or was withdrawn: the CPU would refuse it too. */
const NOT_THE_CHIPS: ReadonlySet<string> = new Set(['NODE-REQ-201', 'NODE-JOB-801', 'NODE-JOB-812']);

function resolve(o: HailoBackendOptions): ResolvedOptions {
  return {
    ...o,
    detected: o.detected ?? (() => ({})),
    failuresToOpen: o.failuresToOpen ?? 3,
    retryBaseMs: o.retryBaseMs ?? 1_000,
    retryCapMs: o.retryCapMs ?? 60_000,
    recheckIntervalMs: o.recheckIntervalMs ?? 60_000,
    inferTimeoutMs: o.inferTimeoutMs ?? 5_000,
    inlinePartMaxMs: o.inlinePartMaxMs ?? INLINE_PART_MAX_MS,
  };
}

/**
 * The Hailo "execution provider shim": runs a model's HEF through the sidecar, with the
 * bundle's pre/post ONNX parts on the CPU backend, for each model whose HEF fits this chip
 * and passes its golden check against the CPU reference. Every other model, and every model
 * whose chip path fails (sidecar gone, repeated timeouts, drift), runs on the CPU backend;
 * Hailo is tried again later with backoff, and each move is logged and reported.
 */
export class HailoBackend implements InferenceBackend {
  readonly name = 'hailo' as const;
  private readonly o: ResolvedOptions;
  private readonly logger: Logger;
  private readonly routes = new Map<string, Route>();
  private readonly routeListeners: Array<() => void> = [];
  private sidecarReason = 'sidecar starting';
  private disposed = false;
  private notifyPending = false;

  constructor(options: HailoBackendOptions) {
    this.o = resolve(options);
    this.logger = options.logger.child({ backend: 'hailo' });
    this.o.sidecar.onChange((state, { reason }) => this.sidecarChanged(state, reason));
  }

  loadedModels(): string[] {
    return [...this.routes.keys()];
  }

  async load(model: BackendModel): Promise<void> {
    await this.o.cpu.load(model);
    const bundleKey = bundleKeyOf(model);
    let route = this.routes.get(model.sha256);
    if (route && route.bundleKey !== bundleKey) {
      // The model was added again with another HEF or manifest: what was decided for the old one does not hold.
      this.routes.delete(model.sha256);
      this.clearTimers(route);
      if (route.path) await this.releasePath(route.model.sha256, route.path);
      route = undefined;
    }
    if (!route) {
      route = this.newRoute(model, bundleKey);
      this.routes.set(model.sha256, route);
      if (!route.final) route.firstProbe = this.probe(route);
    }
    // Only the first probe holds jobs back, so that the model's first job runs where it decides;
    // a retry later runs beside the jobs, which go to the CPU meanwhile.
    await route.firstProbe;
  }

  async run(sha256: string, inputs: Record<string, WireTensor>, options: RunOptions = {}): Promise<RunResult> {
    const route = this.routes.get(sha256);
    if (!route) throw new ConclaveError('NODE-LOAD-102', { data: { model: sha256 } });
    const started = performance.now();
    const client = this.o.sidecar.client;
    if (route.on === 'hailo' && route.path && route.path.client === client) {
      assertInputsMatch(sha256, route.model.inputs, inputs);
      const chipTimeoutMs = Math.min(this.o.inferTimeoutMs, options.timeoutMs !== undefined ? options.timeoutMs / 2 : Infinity);
      try {
        const outputs = await this.runPath(route, route.path, inputs, { ...options, timeoutMs: Math.max(1, chipTimeoutMs) });
        const runMs = performance.now() - started;
        route.stats.hailo.record(runMs);
        route.failures = 0;
        return { outputs, runMs };
      } catch (err) {
        if (options.signal?.aborted || (isConclaveError(err) && NOT_THE_CHIPS.has(err.code))) throw err;
        route.stats.hailo.recordError();
        this.chipFailed(route, err);
        // The job is not lost with the chip: it runs on the CPU now, within what is left of its deadline.
      }
    }
    const elapsed = performance.now() - started;
    const remaining = options.timeoutMs !== undefined ? Math.max(1, options.timeoutMs - elapsed) : undefined;
    try {
      const result = await this.o.cpu.run(sha256, inputs, { ...options, ...(remaining !== undefined ? { timeoutMs: remaining } : {}) });
      route.stats.cpu.record(result.runMs);
      return result;
    } catch (err) {
      route.stats.cpu.recordError();
      throw err;
    }
  }

  async unload(sha256: string): Promise<void> {
    const route = this.routes.get(sha256);
    if (!route) return;
    this.routes.delete(sha256);
    this.clearTimers(route);
    // A probe in flight sees the route gone and releases what it loaded itself.
    if (route.path) await this.releasePath(sha256, route.path);
    await this.o.cpu.unload(sha256);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const route of this.routes.values()) {
      this.clearTimers(route);
      for (const inline of [route.path?.preInline, route.path?.postInline]) await inline?.release().catch(() => undefined);
    }
    this.routes.clear();
    await this.o.cpu.dispose();
  }

  modelBackends(): ModelBackendStatus[] {
    return [...this.routes.values()].map((route) => {
      const stats = route.stats[route.on];
      return {
        sha256: route.model.sha256, backend: route.on, reason: route.reason,
        p50Ms: stats.p50Ms(), runs: stats.runs, errors: route.stats.hailo.errors + route.stats.cpu.errors,
      };
    });
  }

  accelerator(): AcceleratorInfo {
    const device = this.o.sidecar.device;
    const up = this.o.sidecar.state === 'up';
    return {
      kind: 'hailo', warnings: [], ...this.o.detected(),
      state: up ? 'active' : 'unavailable',
      reason: up ? '' : this.sidecarReason,
      ...(device ? { arch: device.arch, firmwareVersion: device.firmwareVersion, hailortVersion: device.hailortVersion } : {}),
    };
  }

  onRouteChange(listener: () => void): void {
    this.routeListeners.push(listener);
  }

  /** Tells the listeners once per turn of the event loop, however many models moved in it. */
  private notifyRouteChange(): void {
    if (this.notifyPending) return;
    this.notifyPending = true;
    setImmediate(() => {
      this.notifyPending = false;
      if (!this.disposed) for (const listener of this.routeListeners) listener();
    });
  }

  private newRoute(model: BackendModel, bundleKey: string): Route {
    const hasHef = (model.artifacts ?? []).some((a) => a.role === 'hef');
    return {
      model, bundleKey, probeDeaths: 0, on: 'cpu', final: !hasHef || !model.hailo,
      reason: !hasHef ? 'no HEF in the bundle' : model.hailo ? 'not yet tried on hailo' : 'bundle has a HEF but no manifest',
      failures: 0, retry: new Backoff({ baseMs: this.o.retryBaseMs, capMs: this.o.retryCapMs }),
      stats: { hailo: new RunStats(), cpu: new RunStats() },
    };
  }

  /** Tries the chip for a model once at a time: load the HEF and its parts, then the golden check. */
  private probe(route: Route): Promise<void> {
    route.probing ??= this.tryHailo(route).finally(() => {
      route.probing = undefined;
    });
    return route.probing;
  }

  private async tryHailo(route: Route): Promise<void> {
    const client = this.o.sidecar.client;
    const device = this.o.sidecar.device;
    if (!client || !device) {
      this.moveToCpu(route, this.sidecarReason);
      return;
    }
    const attempt: Attempt = { client, parts: [], inlines: [], hefLoaded: false };
    try {
      const path = await this.preparePath(client, device, route, attempt);
      const verdict = await this.goldenCheck(route, path);
      if (!this.isCurrent(route, client)) {
        await this.releaseAttempt(route.model.sha256, attempt);
        return;
      }
      route.path = path;
      route.failures = 0;
      route.probeDeaths = 0;
      route.retry.reset();
      this.moveTo(route, 'hailo', `golden check passed (max error ${verdict.toPrecision(3)})`);
      this.scheduleRecheck(route);
    } catch (err) {
      await this.releaseAttempt(route.model.sha256, attempt);
      // A probe overtaken by an unload, a dispose or another sidecar says nothing: its news is stale.
      if (!this.isCurrent(route, client)) return;
      const failure = isConclaveError(err) ? err : new ConclaveError('NODE-JOB-822', { cause: err, detail: String(err) });
      if (failure.code === 'NODE-NET-631' && ++route.probeDeaths >= 2) {
        route.final = true;
        this.moveToCpu(route, `the sidecar died twice while this model's HEF was tried; it is not tried again (${failure.code})`, failure);
        return;
      }
      route.final ||= isFinal(failure);
      this.moveToCpu(route, `${failure.code}: ${failure.message}`, failure);
    }
  }

  /** The route is still the model's, the backend alive, and the sidecar the one the work began on. */
  private isCurrent(route: Route, client: SidecarCalls): boolean {
    return !this.disposed && this.routes.get(route.model.sha256) === route && this.o.sidecar.client === client;
  }

  /** Loads what the chip path needs; throws a coded error naming what does not fit. */
  private async preparePath(client: SidecarCalls, device: SidecarDeviceInfo__Output, route: Route, attempt: Attempt): Promise<HailoPath> {
    const { model } = route;
    const manifest = model.hailo!;
    const chip = device.arch.toLowerCase();
    const artifacts = model.artifacts ?? [];
    const hef = artifacts.find((a) => a.role === 'hef' && a.chip === chip);
    if (!hef) {
      const chips = artifacts.filter((a) => a.role === 'hef').map((a) => a.chip);
      throw new ConclaveError('NODE-LOAD-160', { detail: `this chip is ${chip}; the bundle has HEFs for ${chips.join(', ')}` });
    }
    const part = async (role: 'pre' | 'post'): Promise<{ model?: BackendModel; inline?: InlinePart }> => {
      const artifact = artifacts.find((a) => a.role === role);
      if (!artifact) return {};
      const loaded: BackendModel = {
        sha256: artifact.sha256, path: await this.o.fetchArtifact(artifact), inputs: artifact.inputs, outputs: artifact.outputs,
      };
      const inline = this.o.inlinePartMaxMs > 0 ? await InlinePart.openIfSmall(loaded.path, loaded.inputs, this.o.inlinePartMaxMs) : undefined;
      if (inline) {
        attempt.inlines.push(inline);
        return { model: loaded, inline };
      }
      await this.o.cpu.load(loaded);
      attempt.parts.push(loaded);
      return { model: loaded };
    };
    const { model: pre, inline: preInline } = await part('pre');
    const { model: post, inline: postInline } = await part('post');
    const hefPath = await this.o.fetchArtifact(hef);
    const formats: Record<string, string> = {};
    for (const map of [...manifest.inputs, ...manifest.outputs]) if (map.dtype) formats[map.vstream] = map.dtype;
    attempt.hefLoaded = true;
    const loaded = await client.load({ modelId: model.sha256, hefPath, batchSize: manifest.batchSize || 1, formats });
    if (loaded.hefArch && loaded.hefArch.toLowerCase() !== chip) {
      throw new ConclaveError('NODE-LOAD-160', { detail: `the HEF is for ${loaded.hefArch.toLowerCase()}, this chip is ${chip}` });
    }
    const vstreams = new Map<string, SidecarVstream__Output>();
    for (const v of [...loaded.inputs, ...loaded.outputs]) vstreams.set(v.name, v);
    for (const map of [...manifest.inputs, ...manifest.outputs]) {
      if (!vstreams.has(map.vstream)) {
        throw new ConclaveError('NODE-LOAD-161', { detail: `the HEF has no vstream "${map.vstream}" (it has ${[...vstreams.keys()].join(', ')})` });
      }
    }
    // As given: the orchestrator requires a tolerance with every HEF, and 0 means bit-exact.
    const tolerance = { absolute: manifest.toleranceAbs, relative: manifest.toleranceRel };
    return {
      client, manifest, vstreams, tolerance,
      ...(pre ? { pre } : {}), ...(post ? { post } : {}), ...(preInline ? { preInline } : {}), ...(postInline ? { postInline } : {}),
    };
  }

  /** Runs the golden input both ways; resolves to the largest error, throws NODE-HEALTH-910 past the tolerance. */
  private async goldenCheck(route: Route, path: HailoPath): Promise<number> {
    const inputs = goldenInputs(route.model.inputs);
    const reference = await this.o.cpu.run(route.model.sha256, inputs);
    const hailo = await this.runPath(route, path, inputs, { timeoutMs: this.o.inferTimeoutMs });
    const verdict = compareOutputs(hailo, reference.outputs, path.tolerance);
    if (!verdict.pass) throw new ConclaveError('NODE-HEALTH-910', { detail: describeVerdict(verdict, path.tolerance) });
    return verdict.maxError;
  }

  /** pre.onnx on the CPU, the HEF on the chip, post.onnx on the CPU. */
  private async runPath(
    route: Route, path: HailoPath, inputs: Record<string, WireTensor>, options: RunOptions,
  ): Promise<Record<string, WireTensor>> {
    const staged = path.preInline
      ? await path.preInline.run(inputs)
      : path.pre ? (await this.o.cpu.run(path.pre.sha256, inputs, options)).outputs : inputs;
    const sent = path.manifest.inputs.map((map) => toSidecar(map, staged[map.name], path.vstreams.get(map.vstream)!));
    const result = await path.client.infer(route.model.sha256, sent, {
      timeoutMs: options.timeoutMs ?? this.o.inferTimeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const consumers = path.post ? path.post.inputs : route.model.outputs;
    const received: Record<string, WireTensor> = {};
    for (const map of path.manifest.outputs) {
      const tensor = result.outputs.find((t) => t.name === map.vstream);
      if (!tensor) throw new ConclaveError('NODE-LOAD-161', { detail: `the sidecar returned no "${map.vstream}"` });
      received[map.name] = fromSidecar(tensor, consumers.find((s) => s.name === map.name));
    }
    if (path.postInline) return path.postInline.run(received);
    return path.post ? (await this.o.cpu.run(path.post.sha256, received, options)).outputs : received;
  }

  private chipFailed(route: Route, err: unknown): void {
    const failure = isConclaveError(err) ? err : new ConclaveError('NODE-JOB-822', { cause: err, detail: String(err) });
    route.failures++;
    const gone = SIDECAR_GONE.has(failure.code);
    if (!gone && route.failures < this.o.failuresToOpen) {
      this.logger.warn('JOB', 'hailo run failed; the job runs on the cpu', { code: failure.code, model: route.model.sha256, failures: route.failures });
      return;
    }
    const why = gone ? `${failure.code}: ${failure.message}` : `${route.failures} failures in a row, the last ${failure.code}: ${failure.message}`;
    this.moveToCpu(route, why, failure);
  }

  private moveToCpu(route: Route, reason: string, cause?: ConclaveError): void {
    const path = route.path;
    route.path = undefined;
    if (path) void this.releasePath(route.model.sha256, path);
    if (route.recheckTimer) clearTimeout(route.recheckTimer);
    if (route.on === 'hailo' || reason !== route.reason) {
      const code: ErrorCode = cause?.code === 'NODE-HEALTH-910' ? 'NODE-HEALTH-910' : 'NODE-HEALTH-911';
      const logged = new ConclaveError(code, { detail: reason, ...(cause ? { cause } : {}), data: { model: route.model.sha256 } });
      this.logger.failure(logged, {}, 'warn');
    }
    this.moveTo(route, 'cpu', reason);
    if (!route.final) this.scheduleRetry(route);
  }

  private moveTo(route: Route, on: 'cpu' | 'hailo', reason: string): void {
    const changed = route.on !== on || route.reason !== reason;
    route.on = on;
    route.reason = reason;
    if (!changed) return;
    if (on === 'hailo') this.logger.info('HEALTH', 'model runs on hailo', { model: route.model.sha256, reason });
    this.notifyRouteChange();
  }

  /** Tries the chip again after a backoff delay; while the sidecar is down its return is the signal instead. */
  private scheduleRetry(route: Route): void {
    if (route.retryTimer || this.disposed || this.o.sidecar.state !== 'up') return;
    route.retryTimer = setTimeout(() => {
      route.retryTimer = undefined;
      if (this.routes.get(route.model.sha256) === route) void this.probe(route);
    }, route.retry.next());
    route.retryTimer.unref();
  }

  private scheduleRecheck(route: Route): void {
    if (route.recheckTimer) clearTimeout(route.recheckTimer);
    route.recheckTimer = setTimeout(() => {
      route.recheckTimer = undefined;
      void this.recheck(route);
    }, this.o.recheckIntervalMs);
    route.recheckTimer.unref();
  }

  /** The golden input again on a model that runs on Hailo: drift moves it to the CPU. */
  private async recheck(route: Route): Promise<void> {
    const path = route.path;
    if (route.on !== 'hailo' || !path || this.routes.get(route.model.sha256) !== route) return;
    try {
      await this.goldenCheck(route, path);
      if (route.path === path) this.scheduleRecheck(route);
    } catch (err) {
      // Only the path it checked: a re-probe since has a new one, which this says nothing about.
      if (route.path !== path || !this.isCurrent(route, path.client)) return;
      const failure = isConclaveError(err) ? err : new ConclaveError('NODE-HEALTH-910', { cause: err, detail: String(err) });
      this.moveToCpu(route, `${failure.code}: ${failure.message}`, failure);
    }
  }

  private sidecarChanged(state: string, reason: ConclaveError | undefined): void {
    // The accelerator's state is news too, whether or not a model moves with it.
    this.notifyRouteChange();
    if (state === 'up') {
      this.sidecarReason = '';
      // Every model that fell back tries again now: the sidecar's return is the news a backoff waits for.
      for (const route of this.routes.values()) {
        if (route.final || route.on === 'hailo') continue;
        if (route.retryTimer) clearTimeout(route.retryTimer);
        route.retryTimer = undefined;
        route.retry.reset();
        void this.probe(route);
      }
      return;
    }
    this.sidecarReason = reason ? `sidecar ${state}: ${reason.code}: ${reason.message}` : `sidecar ${state}`;
    for (const route of this.routes.values()) {
      if (route.on === 'hailo') this.moveToCpu(route, this.sidecarReason, reason);
    }
  }

  /** Unloads a path's HEF (on the sidecar that has it) and its parts no other route uses. */
  private async releasePath(sha256: string, path: HailoPath): Promise<void> {
    await path.client.unload(sha256).catch(() => undefined);
    for (const inline of [path.preInline, path.postInline]) await inline?.release().catch(() => undefined);
    for (const part of [path.pre, path.post]) {
      if (part && !this.partInUse(part.sha256)) await this.o.cpu.unload(part.sha256);
    }
  }

  /** What a probe loaded before it failed or went stale. */
  private async releaseAttempt(sha256: string, attempt: Attempt): Promise<void> {
    const current = this.routes.get(sha256);
    // The route's own path (a probe that lost a race with a newer one) keeps its HEF.
    if (attempt.hefLoaded && current?.path?.client !== attempt.client) await attempt.client.unload(sha256).catch(() => undefined);
    for (const part of attempt.parts) if (!this.partInUse(part.sha256)) await this.o.cpu.unload(part.sha256);
    // Inline sessions are the attempt's own; a path that kept them is the route's, not this attempt's.
    const kept = new Set([current?.path?.preInline, current?.path?.postInline]);
    for (const inline of attempt.inlines) if (!kept.has(inline)) await inline.release().catch(() => undefined);
  }

  private partInUse(sha256: string): boolean {
    return this.routes.has(sha256) || [...this.routes.values()].some((r) => r.path?.pre?.sha256 === sha256 || r.path?.post?.sha256 === sha256);
  }

  private clearTimers(route: Route): void {
    if (route.retryTimer) clearTimeout(route.retryTimer);
    if (route.recheckTimer) clearTimeout(route.recheckTimer);
    route.retryTimer = undefined;
    route.recheckTimer = undefined;
  }
}

/**
 * Failures no retry can mend: the bundle itself does not fit this chip, or HailoRT refused the HEF
 * and said a retry would not help (a corrupt file; not a passing shortage of device resources).
 */
function isFinal(failure: ConclaveError): boolean {
  if (failure.code === 'NODE-LOAD-160' || failure.code === 'NODE-LOAD-161') return true;
  const data = failure.data as { retryable?: boolean } | undefined;
  return failure.code === 'NODE-LOAD-162' && data?.retryable === false;
}

/** Identifies a bundle: its files' digests and its manifest. */
function bundleKeyOf(model: BackendModel): string {
  const files = (model.artifacts ?? []).map((a) => `${a.role}:${a.chip}:${a.sha256}`).sort();
  return JSON.stringify([files, model.hailo ?? null]);
}

/** What one probe has loaded so far, so that a failed or stale one releases exactly that. */
interface Attempt {
  readonly client: SidecarCalls;
  readonly parts: BackendModel[];
  readonly inlines: InlinePart[];
  hefLoaded: boolean;
}

/** An ONNX tensor as the vstream takes it: [frames, ...vstream shape], the same bytes. */
function toSidecar(map: HailoTensorMap__Output, tensor: WireTensor | undefined, vstream: SidecarVstream__Output): SidecarTensorData {
  if (!tensor) throw new ConclaveError('NODE-LOAD-161', { detail: `no tensor "${map.name}" for vstream "${map.vstream}"` });
  if (map.dtype && tensor.dtype !== map.dtype) {
    throw new ConclaveError('NODE-LOAD-161', { detail: `"${map.name}" is ${tensor.dtype}, the manifest sends ${map.dtype} to "${map.vstream}"` });
  }
  const shape = vstream.shape.map(Number);
  const perFrame = elementCount(shape);
  const total = elementCount(tensor.dims.map(Number));
  if (perFrame === 0 || total % perFrame !== 0) {
    throw new ConclaveError('NODE-LOAD-161', {
      detail: `"${map.name}" [${tensor.dims.join(', ')}] does not split into frames of "${map.vstream}" [${shape.join(', ')}]`,
    });
  }
  return { name: map.vstream, dtype: tensor.dtype, dims: [total / perFrame, ...shape], data: tensor.raw };
}

/** A vstream's output as the ONNX tensor its consumer declares, the symbolic dimension taking what is left. */
function fromSidecar(tensor: SidecarTensorData, spec: TensorSpec | undefined): WireTensor {
  const dims = tensor.dims.map(Number);
  if (!spec?.dims?.length) return { dtype: tensor.dtype, dims, raw: tensor.data };
  const total = elementCount(dims);
  const declared = spec.dims.map(Number);
  const symbolic = declared.filter((d) => d <= 0).length;
  // Two symbolic dimensions cannot be told apart by a count: the vstream's own shape stands.
  if (symbolic > 1) return { dtype: tensor.dtype, dims, raw: tensor.data };
  const known = declared.filter((d) => d > 0).reduce((n, d) => n * d, 1);
  const shaped = declared.map((d) => (d > 0 ? d : total / known));
  if (elementCount(shaped) !== total) {
    throw new ConclaveError('NODE-LOAD-161', {
      detail: `"${tensor.name}" [${dims.join(', ')}] does not fit "${spec.name ?? ''}" [${declared.join(', ')}]`,
    });
  }
  return { dtype: tensor.dtype, dims: shaped, raw: tensor.data };
}
