import type { ConclaveError } from '@conclave/common/core';
import type { HandshakeInitiator, HandshakeResponder, HandshakeStep } from './handshake.js';
import { SealedChannel, type OpenResult, type SealedChannelOptions } from './sealed-channel.js';

export interface InMemoryHandshakeResult {
  /** The node's last step (FINISH and keys, or its error). */
  node: HandshakeStep;
  /** The orchestrator's last step (the session, or its error). */
  orchestrator: HandshakeStep;
  /** Both channels when both sides finished. */
  channels?: { node: SealedChannel; orchestrator: SealedChannel };
  /** What the node read from a sealed refusal, if the orchestrator refused after FINISH. */
  nodeReadRefusal?: OpenResult;
  /** The node-side error whichever way it arrived (own failure, REJECT or sealed CLOSE). */
  nodeError?: ConclaveError;
  /** Every message in wire order, for tests that replay or tamper with them. */
  messages: Uint8Array[];
}

/**
 * Runs a full handshake between two state machines in one process, delivering each message
 * exactly as a transport would. For tests and benchmarks; the gRPC session does the same over a stream.
 */
export async function runHandshakeInMemory(
  initiator: HandshakeInitiator,
  responder: HandshakeResponder,
  channelOptions: SealedChannelOptions = {},
): Promise<InMemoryHandshakeResult> {
  const messages: Uint8Array[] = [];
  const hello = initiator.start();
  messages.push(hello);
  const response = await responder.next(hello);
  if (!response.send) throw new Error('responder produced nothing to send');
  messages.push(response.send);
  const finish = await initiator.next(response.send);
  if (response.error) {
    return { node: finish, orchestrator: response, ...errorOf(finish.error), messages };
  }
  if (!finish.send) throw new Error('initiator produced nothing to send');
  messages.push(finish.send);
  const result = await responder.next(finish.send);
  if (finish.error) return { node: finish, orchestrator: result, ...errorOf(finish.error), messages };
  if (!finish.done) throw new Error('initiator finished without keys');
  const nodeChannel = new SealedChannel(finish.done, channelOptions);
  if (result.error) {
    if (result.send) {
      messages.push(result.send);
      const refused = await initiator.next(result.send);
      return { node: refused, orchestrator: result, ...errorOf(refused.error), messages };
    }
    if (result.sealed) {
      messages.push(result.sealed);
      const read = nodeChannel.open(result.sealed);
      return { node: finish, orchestrator: result, nodeReadRefusal: read, ...errorOf(read.kind === 'close' ? read.error : undefined), messages };
    }
    return { node: finish, orchestrator: result, messages };
  }
  if (!result.done) throw new Error('responder finished without a session');
  return {
    node: finish,
    orchestrator: result,
    channels: { node: nodeChannel, orchestrator: new SealedChannel(result.done, channelOptions) },
    messages,
  };
}

function errorOf(error: ConclaveError | undefined): { nodeError?: ConclaveError } {
  return error ? { nodeError: error } : {};
}
