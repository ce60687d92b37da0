import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { ModelChunk__Output, ModelRef, NodeMessage } from '@conclave/protocol';
import type { ModelStore, ModelWriter } from './model-store.js';

interface Transfer {
  writer: ModelWriter;
  promise: Promise<string>;
  resolve: (path: string) => void;
  reject: (err: Error) => void;
  /** Chunks are handled strictly one after another, in arrival order. */
  chain: Promise<void>;
}

/**
 * Fetches model files from the orchestrator over the session, in chunks, into the model
 * store, which verifies the sha256 before the file can be used. One transfer per model at a
 * time: concurrent jobs for the same model wait on the same promise.
 */
export class ModelFetcher {
  private readonly transfers = new Map<string, Transfer>();
  private readonly starting = new Map<string, Promise<string>>();
  /** Set in the same tick as the store check, so that concurrent jobs share one fetch. */
  private readonly fetches = new Map<string, Promise<string>>();

  constructor(
    private readonly store: ModelStore,
    private readonly send: (message: NodeMessage) => boolean,
    private readonly logger: Logger,
  ) {}

  /** The path of a verified copy of the model, fetching it first if needed. */
  ensure(model: ModelRef): Promise<string> {
    const sha256 = model.sha256 ?? '';
    if (this.store.has(sha256)) return Promise.resolve(this.store.pathOf(sha256));
    const existing = this.starting.get(sha256) ?? this.transfers.get(sha256)?.promise;
    if (existing) return existing;
    // Registered before the first await, so that concurrent jobs for the same model share it.
    const started = this.start(model, sha256).finally(() => this.starting.delete(sha256));
    this.starting.set(sha256, started);
    return started;
  }

  private async start(model: ModelRef, sha256: string): Promise<string> {
    const writer = await this.store.beginWrite(sha256, Number(model.size ?? 0));
    let resolve!: (path: string) => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<string>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const transfer: Transfer = { writer, promise, resolve, reject, chain: Promise.resolve() };
    this.transfers.set(sha256, transfer);
    this.logger.info('LOAD', 'fetching model', { model: model.name, sha256, size: model.size, resumeAt: writer.offset });
    if (!this.send({ fetchModel: { sha256, offset: writer.offset } })) {
      await this.fail(sha256, new ConclaveError('NODE-NET-603', { detail: 'not connected' }));
    }
    return promise;
  }

  onChunk(chunk: ModelChunk__Output): Promise<void> {
    const transfer = this.transfers.get(chunk.sha256);
    if (!transfer) return Promise.resolve();
    transfer.chain = transfer.chain.then(() => this.handleChunk(transfer, chunk));
    return transfer.chain;
  }

  private async handleChunk(transfer: Transfer, chunk: ModelChunk__Output): Promise<void> {
    if (this.transfers.get(chunk.sha256) !== transfer) return;
    try {
      if (chunk.error) {
        // The orchestrator's own verdict decides: a missing file there will not appear on a retry.
        const code = chunk.error.retryable ? 'NODE-NET-603' : 'NODE-LOAD-151';
        throw new ConclaveError(code, { detail: `${chunk.error.code} ${chunk.error.message}` });
      }
      if (chunk.data.byteLength > 0) await transfer.writer.write(chunk.offset, chunk.data);
      if (!chunk.last) return;
      // Still registered while finish() verifies, so that fail() below can reject it: a
      // transfer removed first left the job waiting forever on a file that failed its sha256.
      await transfer.writer.finish();
      if (this.transfers.get(chunk.sha256) === transfer) this.transfers.delete(chunk.sha256);
      this.logger.info('LOAD', 'model verified and stored', { sha256: chunk.sha256 });
      transfer.resolve(this.store.pathOf(chunk.sha256));
    } catch (err) {
      await this.fail(chunk.sha256, err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The session ended: pending transfers fail (retryable); their partial files are kept to resume. */
  async abortAll(reason: string): Promise<void> {
    for (const sha256 of [...this.transfers.keys()]) {
      await this.fail(sha256, new ConclaveError('NODE-NET-603', { detail: reason }));
    }
  }

  private async fail(sha256: string, err: Error): Promise<void> {
    const transfer = this.transfers.get(sha256);
    this.transfers.delete(sha256);
    if (!transfer) return;
    if (transfer.writer.state === 'open') await transfer.writer.abort().catch(() => undefined);
    transfer.reject(err);
  }
}
