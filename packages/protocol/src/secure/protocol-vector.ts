import { toHex } from './bytes.js';
import { tweetnaclProvider, type CryptoProvider } from './crypto-provider.js';
import { MemoryEnrollment } from './enrollment.js';
import { createInitiator, createResponder } from './handshake.js';
import { fingerprint, identityFromSeed, nodeIdFromPublicKey } from './identity.js';
import { runHandshakeInMemory } from './in-memory-handshake.js';
import { hashToken } from './join-string.js';
import type { OpenResult } from './sealed-channel.js';
import { deriveHandshakeKeys, nextEpochKey, Transcript } from './key-schedule.js';
import { createRotationStatement, encodeRotationStatement, PinSet, rotationStatementToText } from './pins.js';

const range = (start: number) => Uint8Array.from({ length: 32 }, (_, i) => start + i);

/** The fixed inputs of the spec's test vector (docs/protocol.md, "Test vector"). */
export const VECTOR_INPUTS = {
  nodeSeed: range(0x00),
  orchestratorSeed: range(0x20),
  nodeEphemeralSecret: range(0x40),
  orchestratorEphemeralSecret: range(0x60),
  token: range(0x80),
  /** The key the orchestrator key is rotated to in the vector's rotation statement. */
  rotationNewSeed: range(0xa0),
  /** 2025-01-01T00:00:00Z on both clocks. */
  timeMs: 1_735_689_600_000,
} as const;

/** Detail of the vector's CLOSE frame. */
const VECTOR_CLOSE_DETAIL = 'revoked by the operator';

/**
 * Runs one handshake (with enrollment by token) from the fixed inputs with the tweetnacl
 * reference provider (or another, which must give the same bytes), then frames after it: the
 * node's `hello`, a REKEY and a frame under the next key, the orchestrator's CLOSE; and a node's
 * REJECT and a rotation statement. Returns every value the spec lists, as hex. Each frame is also
 * opened by the other side, so a vector that does not work cannot be printed.
 */
export async function computeProtocolVector(provider: CryptoProvider = tweetnaclProvider): Promise<Array<[string, string]>> {
  const v = VECTOR_INPUTS;
  const node = identityFromSeed(v.nodeSeed, provider);
  const orchestrator = identityFromSeed(v.orchestratorSeed, provider);
  const now = () => v.timeMs;
  const registry = new MemoryEnrollment({ now });
  registry.addToken(v.token, 3_600_000);
  const initiator = createInitiator({
    identity: node,
    pins: new PinSet([fingerprint(orchestrator.publicKey)]),
    token: v.token,
    now,
    random: () => Uint8Array.from(v.nodeEphemeralSecret),
    provider,
  });
  const responder = createResponder({
    identity: orchestrator,
    hooks: registry,
    now,
    random: () => Uint8Array.from(v.orchestratorEphemeralSecret),
    provider,
  });
  const run = await runHandshakeInMemory(initiator, responder, { now });
  const session = run.node.done;
  if (!session || !run.channels) throw new Error('vector handshake failed');
  const [hello, response, finish] = run.messages as [Uint8Array, Uint8Array, Uint8Array];

  // Recompute the intermediate values from the messages, as another implementation would.
  const transcript = new Transcript();
  const h0 = transcript.hash;
  transcript.mix(hello);
  const h1 = transcript.hash;
  transcript.mix(response.subarray(0, 48));
  const h2a = transcript.hash;
  const shared = provider.x25519(v.nodeEphemeralSecret, response.subarray(16, 48));
  const keys = deriveHandshakeKeys(shared, h2a);
  transcript.mix(response.subarray(48));
  transcript.mix(finish.subarray(0, 8));
  const h3a = transcript.hash;
  transcript.mix(finish.subarray(8));
  const { node: nodeChannel, orchestrator: orchChannel } = run.channels;
  const frame = nodeChannel.seal(new TextEncoder().encode('hello'));
  const rekeyFrame = nodeChannel.rekey();
  const afterRekey = nodeChannel.seal(new TextEncoder().encode('hello again'));
  const opened = [orchChannel.open(frame), orchChannel.open(rekeyFrame), orchChannel.open(afterRekey)];
  const closeFrame = orchChannel.close('revoked', VECTOR_CLOSE_DETAIL) as Uint8Array;
  opened.push(nodeChannel.open(closeFrame));
  const [o0, o1, o2, o3] = opened as [OpenResult, OpenResult, OpenResult, OpenResult];
  if (
    o0.kind !== 'data' ||
    o1.kind !== 'rekey' ||
    o2.kind !== 'data' ||
    new TextDecoder().decode(o2.data) !== 'hello again' ||
    o3.kind !== 'close' ||
    o3.failure !== 'revoked'
  ) {
    throw new Error('vector frames do not open as sealed');
  }

  // The REJECT a node sends when the orchestrator key is not pinned (reason 16): the same node and
  // ephemeral secret, so the same HELLO, and the same RESPONSE, but a node that pins another key.
  const rotatedTo = identityFromSeed(v.rotationNewSeed, provider);
  const unpinned = createInitiator({
    identity: node,
    pins: new PinSet([fingerprint(rotatedTo.publicKey)]),
    now,
    random: () => Uint8Array.from(v.nodeEphemeralSecret),
    provider,
  });
  unpinned.start();
  const refused = await unpinned.next(response);
  if (refused.error?.data['failure'] !== 'pin-mismatch' || !refused.send) throw new Error('vector node sent no REJECT');
  const reject = refused.send;

  const rotation = createRotationStatement(orchestrator, rotatedTo.publicKey, v.timeMs, provider);

  const rows: Array<[string, Uint8Array | string]> = [
    ['node_seed', v.nodeSeed],
    ['node_public_key', node.publicKey],
    ['node_id', nodeIdFromPublicKey(node.publicKey)],
    ['orchestrator_seed', v.orchestratorSeed],
    ['orchestrator_public_key', orchestrator.publicKey],
    ['orchestrator_fingerprint', fingerprint(orchestrator.publicKey)],
    ['node_ephemeral_secret', v.nodeEphemeralSecret],
    ['orchestrator_ephemeral_secret', v.orchestratorEphemeralSecret],
    ['token', v.token],
    ['token_hash', hashToken(v.token)],
    ['time_ms', String(v.timeMs)],
    ['h0', h0],
    ['msg1_hello', hello],
    ['h1', h1],
    ['msg2_response', response],
    ['h2_signed_by_orchestrator', h2a],
    ['dh_shared_secret', shared],
    ['k2_response_key', keys.responseKey],
    ['k3_finish_key', keys.finishKey],
    ['ck_chain_key', keys.chainKey],
    ['msg3_finish', finish],
    ['h3_signed_by_node', h3a],
    ['h_final', transcript.hash],
    ['session_id', session.sessionId],
    ['key_node_to_orchestrator', session.sendKey],
    ['key_orchestrator_to_node', session.receiveKey],
    ['frame0_node_hello', frame],
    ['key_node_to_orchestrator_epoch1', nextEpochKey(session.sendKey)],
    ['frame1_node_rekey', rekeyFrame],
    ['frame0_epoch1_node_hello_again', afterRekey],
    ['frame0_orchestrator_close_revoked', closeFrame],
    ['reject_node_pin_mismatch', reject],
    ['rotation_new_seed', v.rotationNewSeed],
    ['rotation_new_public_key', rotatedTo.publicKey],
    ['rotation_statement', encodeRotationStatement(rotation)],
    ['rotation_statement_text', rotationStatementToText(rotation)],
  ];
  return rows.map(([name, value]) => [name, typeof value === 'string' ? value : toHex(value)]);
}

/** The vector as the spec prints it: `name value` lines, long hex wrapped at 64 characters. */
export function formatProtocolVector(rows: ReadonlyArray<[string, string]>): string {
  const width = Math.max(...rows.map(([name]) => name.length));
  const lines: string[] = [];
  for (const [name, value] of rows) {
    const chunks = value.match(/.{1,64}/g) ?? [''];
    chunks.forEach((chunk, i) => lines.push(`${(i === 0 ? name : '').padEnd(width)}  ${chunk}`));
  }
  return lines.join('\n');
}

/** Parses the block back (continuation lines have an empty name). */
export function parseProtocolVector(text: string): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const match = /^(\S*)\s+(\S+)$/.exec(line.startsWith(' ') ? `_${line}` : line);
    if (!match) continue;
    const [, name, value] = match as unknown as [string, string, string];
    const last = rows[rows.length - 1];
    if (name === '_' && last) last[1] += value;
    else rows.push([name, value]);
  }
  return rows;
}
