import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { FetchModel__Output, NodeFrame__Output, NodeGatewayHandlers, Register__Output } from '@conclave/protocol';
import { wireError } from './dispatcher.js';
import type { ModelRegistry } from './model-registry.js';
import type { NodeRegistry } from './node-registry.js';
import { NodeSession } from './node-session.js';
import type { SessionStream } from './node-session.js';

/** A node must register within this long after opening its stream. */
export const REGISTER_TIMEOUT_MS = 5_000;

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface GatewayServiceOptions {
  registry: NodeRegistry;
  models: ModelRegistry;
  logger: Logger;
  heartbeatIntervalMs: number;
  version: string;
}

/**
 * NodeGateway.Session: one bidirectional stream per node. The first frame must be Register;
 * after that the stream belongs to a NodeSession until either side ends it.
 */
export function createGatewayService(o: GatewayServiceOptions): NodeGatewayHandlers {
  return {
    Session(stream: SessionStream) {
      const peer = stream.getPeer();
      const timer = setTimeout(() => {
        o.logger.warn('NET', 'node did not register in time', { peer, code: 'ORCH-NET-603' });
        stream.end();
      }, REGISTER_TIMEOUT_MS);
      stream.once('data', (frame: NodeFrame__Output) => {
        clearTimeout(timer);
        const register = frame.message?.body === 'register' ? frame.message.register : null;
        if (!register || !NODE_ID.test(register.nodeId)) {
          const err = new ConclaveError('ORCH-NET-603', { detail: 'first frame must be a Register with a valid node id', data: { peer } });
          o.logger.failure(err, {}, 'warn');
          stream.write({ message: { goodbye: { reason: err.message, code: err.code } } });
          stream.end();
          return;
        }
        void accept(stream, register);
      });
      stream.on('error', (err) => o.logger.debug('NET', 'node stream error', { peer, err }));
    },
  };

  async function accept(stream: SessionStream, register: Register__Output): Promise<void> {
    const log = o.logger.child({ node: register.nodeId });
    const session = new NodeSession(stream, register, log);
    const end = (reason: string) => session.close(new ConclaveError('ORCH-NET-602', { detail: reason, data: { node: session.id } }));
    stream.on('end', () => end('stream ended by node'));
    stream.on('cancelled', () => end('stream cancelled'));
    stream.on('error', (err) => end(err.message));
    session.on('message', (message) => {
      if (message.body === 'fetchModel' && message.fetchModel) void sendModel(session, message.fetchModel, log);
      else if (message.body === 'goodbye') end(`node said goodbye: ${message.goodbye?.reason ?? ''}`);
    });
    session.send({
      registered: { nodeId: session.id, heartbeatIntervalMs: o.heartbeatIntervalMs, orchestratorVersion: o.version },
    });
    await o.registry.add(session);
    log.info('NET', 'node registered', {
      name: session.name, slots: session.slots, backends: session.backends.join(','), models: session.storedModels.size,
      pendingResults: register.pendingResults.length,
    });
  }

  async function sendModel(session: NodeSession, request: FetchModel__Output, log: Logger): Promise<void> {
    const { sha256, offset } = request;
    try {
      let sent = 0;
      for await (const chunk of o.models.readChunks(sha256, offset)) {
        if (session.isClosed) return;
        const last = chunk.offset + chunk.data.byteLength >= chunk.totalSize;
        session.send({ modelChunk: { sha256, offset: chunk.offset, data: chunk.data, totalSize: chunk.totalSize, last } });
        sent += chunk.data.byteLength;
        await session.drained();
      }
      if (sent === 0) session.send({ modelChunk: { sha256, offset, data: Buffer.alloc(0), totalSize: offset, last: true } });
      log.debug('LOAD', 'model sent to node', { sha256, offset, bytes: sent });
    } catch (err) {
      const error = isConclaveError(err) ? err : new ConclaveError('ORCH-LOAD-103', { detail: String(err), cause: err });
      log.failure(error, { sha256 }, 'warn');
      session.send({ modelChunk: { sha256, offset, last: true, error: wireError(error) } });
    }
  }
}
