import { lstat } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { ConclaveError, isConclaveError, isErrorCode, type Logger } from '@conclave/common';
import type {
  SidecarDeviceInfo__Output, SidecarError__Output, SidecarHealthResponse__Output, SidecarLoadResponse__Output,
  SidecarRequest, SidecarResponse__Output, SidecarTensor__Output,
} from '@conclave/protocol';
import { DEFAULT_MAX_FRAME_BYTES, FrameReader, decodeResponse, encodeRequestFrame } from './sidecar-frames.js';

/** How long `connect` waits for the socket to accept unless told. */
export const DEFAULT_SIDECAR_CONNECT_TIMEOUT_MS = 2_000;
/**
 * The client-side deadline of a request that has no timeout of its own (device info, a HEF
 * load, health). Loading a large HEF takes a few seconds on a Pi 5; 30 s is far past that.
 */
export const DEFAULT_SIDECAR_REQUEST_TIMEOUT_MS = 30_000;
/**
 * Added to an infer's own timeout for the client-side deadline: the sidecar answers a timeout
 * itself with NODE-JOB-820, and the grace lets that answer arrive before the client gives up.
 */
export const DEFAULT_SIDECAR_DEADLINE_GRACE_MS = 1_000;

export interface SidecarClientOptions {
  logger: Logger;
  /** @default DEFAULT_SIDECAR_CONNECT_TIMEOUT_MS (2 000) */
  connectTimeoutMs?: number;
  /** The largest response frame accepted. @default DEFAULT_MAX_FRAME_BYTES (64 MiB) */
  maxFrameBytes?: number;
  /** The deadline of a request without its own timeout. @default DEFAULT_SIDECAR_REQUEST_TIMEOUT_MS (30 000) */
  requestTimeoutMs?: number;
  /** Added to an infer's `timeoutMs` for its client-side deadline. @default DEFAULT_SIDECAR_DEADLINE_GRACE_MS (1 000) */
  deadlineGraceMs?: number;
}

export interface ResolvedSidecarClientOptions {
  readonly logger: Logger;
  readonly connectTimeoutMs: number;
  readonly maxFrameBytes: number;
  readonly requestTimeoutMs: number;
  readonly deadlineGraceMs: number;
}

export function resolveSidecarClientOptions(options: SidecarClientOptions): ResolvedSidecarClientOptions {
  const resolved = {
    logger: options.logger,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_SIDECAR_CONNECT_TIMEOUT_MS,
    maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_SIDECAR_REQUEST_TIMEOUT_MS,
    deadlineGraceMs: options.deadlineGraceMs ?? DEFAULT_SIDECAR_DEADLINE_GRACE_MS,
  };
  for (const key of ['connectTimeoutMs', 'maxFrameBytes', 'requestTimeoutMs'] as const) {
    if (!Number.isFinite(resolved[key]) || resolved[key] <= 0) {
      throw new RangeError(`SidecarClient: ${key} must be a positive number, got ${resolved[key]}`);
    }
  }
  if (!Number.isFinite(resolved.deadlineGraceMs) || resolved.deadlineGraceMs < 0) {
    throw new RangeError(`SidecarClient: deadlineGraceMs must be a non-negative number, got ${resolved.deadlineGraceMs}`);
  }
  return resolved;
}

/** A tensor as the sidecar exchanges it: batch-first dims, row-major little-endian bytes. */
export interface SidecarTensorData {
  readonly name: string;
  /** "uint8" or "float32". */
  readonly dtype: string;
  readonly dims: readonly number[];
  readonly data: Buffer;
}

export interface SidecarLoadOptions {
  /** The agent's key for the HEF: the model's sha256. */
  modelId: string;
  hefPath: string;
  /** Frames per HailoRT call. @default 1 */
  batchSize?: number;
  /** Host-side format per vstream name ("uint8" / "float32"); absent ones keep HailoRT's default. */
  formats?: Record<string, string>;
}

export interface SidecarInferOptions {
  /** Sent to the sidecar; the client's own deadline is this plus `deadlineGraceMs`. @default the sidecar's */
  timeoutMs?: number;
  /** Rejects the request with NODE-JOB-801; its late answer is dropped. */
  signal?: AbortSignal;
}

export interface SidecarInferResult {
  /** Views of the response frame, not copies. */
  readonly outputs: SidecarTensor__Output[];
  /** Time inside HailoRT for the call that ran these frames. */
  readonly deviceMs: number;
  /** Frames that call ran, this request's and those batched with it. */
  readonly batchedFrames: number;
}

/** The bodies a request can have; its answer has the same one, or `error`. */
type Body = NonNullable<SidecarRequest['body']>;

interface Pending {
  readonly id: number;
  readonly expect: Body;
  readonly resolve: (response: SidecarResponse__Output) => void;
  readonly reject: (err: ConclaveError) => void;
}

function describeMode(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

/**
 * The agent only talks to a socket its own user owns with no group or other bits: any other
 * user who could reach it could use the device or forge results. A missing socket is only
 * "not reachable": the sidecar may not have started yet.
 */
async function checkSocket(socketPath: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(socketPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ConclaveError('NODE-NET-630', { detail: `no socket at ${socketPath}`, data: { socketPath }, cause: err });
    }
    throw new ConclaveError('NODE-NET-630', {
      detail: `cannot stat ${socketPath}: ${(err as Error).message}`, data: { socketPath }, cause: err,
    });
  }
  const uid = process.getuid?.();
  const mode = describeMode(stats.mode);
  const data = { socketPath, mode, owner: stats.uid, agentUid: uid };
  if (!stats.isSocket()) {
    throw new ConclaveError('NODE-AUTH-590', { detail: `${socketPath} is not a socket (mode ${mode})`, data });
  }
  if (uid !== undefined && stats.uid !== uid) {
    throw new ConclaveError('NODE-AUTH-590', {
      detail: `${socketPath} is owned by uid ${stats.uid}, the agent runs as uid ${uid}`, data,
    });
  }
  if ((stats.mode & 0o077) !== 0) {
    throw new ConclaveError('NODE-AUTH-590', { detail: `${socketPath} has mode ${mode}, want 0600`, data });
  }
}

function openSocket(socketPath: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConclaveError('NODE-NET-630', { detail: `connect to ${socketPath} timed out after ${timeoutMs} ms`, data: { socketPath } }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ConclaveError('NODE-NET-630', {
        detail: `connect to ${socketPath}: ${err.code ?? err.message}`, data: { socketPath }, cause: err,
      }));
    };
    socket.once('error', onError);
  });
}

/** A SidecarError answer as a ConclaveError under its own code, when the catalog knows it. */
export function sidecarErrorToConclave(error: SidecarError__Output): ConclaveError {
  const data = { sidecarCode: error.code, retryable: error.retryable };
  if (isErrorCode(error.code)) {
    return new ConclaveError(error.code, { ...(error.message ? { detail: error.message } : {}), data });
  }
  return new ConclaveError('NODE-JOB-822', { detail: `sidecar answered ${error.code || 'no code'}: ${error.message}`, data });
}

/**
 * One connection to the Hailo sidecar: requests are pipelined on it and answered by id, in any
 * order. Nothing here blocks the event loop; every request has a client-side deadline, so a
 * hung sidecar fails requests instead of holding them.
 */
export class SidecarClient {
  readonly options: ResolvedSidecarClientOptions;
  /**
   * Settles once, with what ended the connection: NODE-NET-632 after a bad frame, NODE-NET-631
   * otherwise (the sidecar closed it or died, or `close()`). Never rejects.
   */
  readonly closed: Promise<ConclaveError>;
  private readonly logger: Logger;
  private readonly reader: FrameReader;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private endReason: ConclaveError | undefined;
  private settleClosed!: (reason: ConclaveError) => void;

  /**
   * Checks the socket's type, owner and mode (NODE-AUTH-590), then connects (NODE-NET-630 when
   * it is missing, refused or slow).
   */
  static async connect(socketPath: string, options: SidecarClientOptions): Promise<SidecarClient> {
    const resolved = resolveSidecarClientOptions(options);
    await checkSocket(socketPath);
    const socket = await openSocket(socketPath, resolved.connectTimeoutMs);
    return new SidecarClient(socketPath, socket, resolved);
  }

  private constructor(
    readonly socketPath: string,
    private readonly socket: Socket,
    options: ResolvedSidecarClientOptions,
  ) {
    this.options = options;
    this.logger = options.logger.child({ sidecarSocket: socketPath });
    this.reader = new FrameReader(options.maxFrameBytes);
    this.closed = new Promise((resolve) => {
      this.settleClosed = resolve;
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.end(new ConclaveError('NODE-NET-631', { detail: `socket error: ${err.code ?? err.message}`, cause: err }));
    });
    socket.on('close', () => {
      const partial = this.reader.pendingBytes;
      const detail = partial > 0
        ? `the sidecar closed the connection mid-frame (${partial} of ${this.reader.pendingFrameBytes ?? '?'} bytes)`
        : 'the sidecar closed the connection';
      this.end(new ConclaveError('NODE-NET-631', { detail }));
      this.settleClosed(this.endReason!);
    });
  }

  /** True once the connection has ended; every request then fails at once. */
  get isClosed(): boolean {
    return this.endReason !== undefined;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  async deviceInfo(): Promise<SidecarDeviceInfo__Output> {
    const response = await this.request('deviceInfo', { deviceInfo: {} });
    return response.deviceInfo!;
  }

  /** Loads a HEF under `modelId`; resolves with its vstreams and the chip it was compiled for. */
  async load(options: SidecarLoadOptions): Promise<SidecarLoadResponse__Output> {
    const response = await this.request('load', {
      load: {
        modelId: options.modelId,
        hefPath: options.hefPath,
        batchSize: options.batchSize ?? 0,
        formats: options.formats ?? {},
      },
    });
    return response.load!;
  }

  /**
   * Runs one batch. `inputs`' buffers go to the socket as they are, not copied: they must not
   * change until this settles.
   */
  async infer(modelId: string, inputs: readonly SidecarTensorData[], options: SidecarInferOptions = {}): Promise<SidecarInferResult> {
    const { timeoutMs, signal } = options;
    const deadlineMs = timeoutMs !== undefined && timeoutMs > 0
      ? timeoutMs + this.options.deadlineGraceMs
      : this.options.requestTimeoutMs;
    const response = await this.request('infer', {
      infer: {
        modelId,
        inputs: inputs.map((t) => ({ name: t.name, dtype: t.dtype, dims: [...t.dims], data: t.data })),
        timeoutMs: timeoutMs !== undefined && timeoutMs > 0 ? Math.ceil(timeoutMs) : 0,
      },
    }, { deadlineMs, ...(signal ? { signal } : {}), modelId });
    const infer = response.infer!;
    return { outputs: infer.outputs, deviceMs: infer.deviceMs, batchedFrames: infer.batchedFrames };
  }

  async unload(modelId: string): Promise<void> {
    await this.request('unload', { unload: { modelId } });
  }

  async health(): Promise<SidecarHealthResponse__Output> {
    const response = await this.request('health', { health: {} });
    return response.health!;
  }

  /** Ends the connection; pending requests fail with NODE-NET-631. Resolves once the socket is closed. */
  async close(): Promise<void> {
    this.end(new ConclaveError('NODE-NET-631', { detail: 'closed by the agent' }));
    await this.closed;
  }

  private request(
    expect: Body,
    body: Omit<SidecarRequest, 'id' | 'body'>,
    options: { deadlineMs?: number; signal?: AbortSignal; modelId?: string } = {},
  ): Promise<SidecarResponse__Output> {
    if (this.endReason) return Promise.reject(this.endReason);
    const { signal } = options;
    const data = options.modelId === undefined ? {} : { model: options.modelId };
    if (signal?.aborted) return Promise.reject(new ConclaveError('NODE-JOB-801', { data }));
    const id = this.nextId++;
    const deadlineMs = options.deadlineMs ?? this.options.requestTimeoutMs;
    let frame: Buffer[];
    try {
      frame = encodeRequestFrame({ id, body: expect, ...body });
    } catch (err) {
      return Promise.reject(new ConclaveError('NODE-REQ-230', {
        detail: `cannot encode ${expect} request: ${(err as Error).message}`, cause: err, data,
      }));
    }
    return new Promise<SidecarResponse__Output>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
      };
      const onAbort = () => {
        cleanup();
        reject(new ConclaveError('NODE-JOB-801', { data }));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new ConclaveError('NODE-JOB-820', {
          detail: `no answer from the sidecar to ${expect} within ${deadlineMs} ms`, data: { ...data, deadlineMs },
        }));
      }, deadlineMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        id,
        expect,
        resolve: (response) => {
          cleanup();
          resolve(response);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      });
      // One writev for the whole frame: its header and every tensor's bytes.
      this.socket.cork();
      for (const chunk of frame) this.socket.write(chunk);
      this.socket.uncork();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.endReason) return;
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.end(isConclaveError(err) ? err : new ConclaveError('NODE-NET-632', { cause: err }));
      return;
    }
    for (const frame of frames) {
      let response: SidecarResponse__Output;
      try {
        response = decodeResponse(frame);
      } catch (err) {
        this.end(isConclaveError(err) ? err : new ConclaveError('NODE-NET-632', { cause: err }));
        return;
      }
      this.dispatch(response);
    }
  }

  private dispatch(response: SidecarResponse__Output): void {
    const pending = this.pending.get(response.id);
    if (!pending) {
      // Its request timed out or was aborted: the answer has nobody to go to.
      this.logger.debug('NET', 'late sidecar answer dropped', { requestId: response.id, body: response.body });
      return;
    }
    if (response.body === 'error' && response.error) {
      pending.reject(sidecarErrorToConclave(response.error));
      return;
    }
    if (response.body !== pending.expect || !response[pending.expect]) {
      pending.reject(new ConclaveError('NODE-NET-632', {
        detail: `answer ${response.body ?? 'without a body'} to a ${pending.expect} request`,
        data: { requestId: response.id },
      }));
      return;
    }
    pending.resolve(response);
  }

  /**
   * The one place the connection ends: the first reason wins and every pending request fails
   * with it at once. `closed` settles on the socket's 'close', which destroy() brings.
   */
  private end(reason: ConclaveError): void {
    if (this.endReason) return;
    this.endReason = reason;
    this.socket.destroy();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(reason);
    if (pending.length > 0) {
      this.logger.failure(reason, { pendingRequests: pending.length }, 'warn');
    } else {
      this.logger.debug('NET', 'sidecar connection ended', { code: reason.code, detail: reason.detail });
    }
  }
}
