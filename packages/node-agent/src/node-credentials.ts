import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConclaveError, ensurePrivateDir, writeFileDurable } from '@conclave/common';
import {
  PinSet, decodeJoinString, loadOrCreateIdentity, nodeIdFromPublicKey,
} from '@conclave/protocol';
import type { Identity } from '@conclave/protocol';

const JOIN_STATE_FILE = 'join-state.json';

/** What a node keeps in its data dir to find and trust its orchestrator. */
interface JoinState {
  address?: string;
  /** `SHA256:…` fingerprints of orchestrator keys this node trusts. */
  pins: string[];
  /** base64url join token, kept only until the first session succeeds. */
  token?: string;
  /** `SHA256:…` of the orchestrator's TLS certificate, when the join string carried one: connect with TLS. */
  tlsFingerprint?: string;
}

/**
 * The node's identity (an Ed25519 key generated on first start, file mode 0600, never leaving
 * the board; the node id is derived from it) and its join state: the orchestrator address,
 * the pinned orchestrator fingerprints, and the join token until it has been used.
 */
export class NodeCredentials {
  private constructor(
    private readonly dir: string,
    readonly identity: Identity,
    private state: JoinState,
  ) {}

  get nodeId(): string {
    return nodeIdFromPublicKey(this.identity.publicKey);
  }

  get address(): string | undefined {
    return this.state.address;
  }

  get pins(): PinSet {
    return new PinSet(this.state.pins);
  }

  /** The pinned TLS certificate digest from the join string; absent: the gateway was joined without TLS. */
  get tlsFingerprint(): string | undefined {
    return this.state.tlsFingerprint;
  }

  get token(): Uint8Array | undefined {
    return this.state.token ? Buffer.from(this.state.token, 'base64url') : undefined;
  }

  /**
   * Loads the key (creating it on first start) and the join state; `join`, when given, adds its
   * address, token and orchestrator pin (a board's first boot, or a re-enrollment).
   */
  static async load(dataDir: string, join?: string): Promise<NodeCredentials> {
    // 0700 (and tightened if an older version or an operator made it 0755): it holds the key.
    await ensurePrivateDir(dataDir);
    const { identity } = await loadOrCreateIdentity(dataDir, { role: 'node' });
    const credentials = new NodeCredentials(dataDir, identity, await readState(dataDir));
    if (join) {
      const info = decodeJoinString(join);
      const pins = new Set(credentials.state.pins);
      pins.add(info.fingerprint);
      // A new join string is the truth about TLS too: one without a certificate digest drops the old one.
      credentials.state = {
        address: info.address, pins: [...pins], token: Buffer.from(info.token).toString('base64url'),
        ...(info.tlsFingerprint ? { tlsFingerprint: info.tlsFingerprint } : {}),
      };
      await credentials.save();
    }
    if (credentials.state.pins.length === 0) {
      throw new ConclaveError('NODE-STATE-702', {
        detail: `${dataDir} has no pinned orchestrator; start once with --join <join string> from \`orchestrator token create\``,
      });
    }
    return credentials;
  }

  /** Trust keys the orchestrator vouched for with a rotation statement. */
  async addPins(pins: readonly string[]): Promise<void> {
    if (pins.length === 0) return;
    this.state = { ...this.state, pins: [...new Set([...this.state.pins, ...pins])] };
    await this.save();
  }

  /** After the first accepted session the node connects by key alone: the token is dropped. */
  async forgetToken(): Promise<void> {
    if (!this.state.token) return;
    const { token: _used, ...rest } = this.state;
    this.state = rest;
    await this.save();
  }

  private async save(): Promise<void> {
    // Durable: a pin or token lost to a power cut would lock the board out.
    await writeFileDurable(join(this.dir, JOIN_STATE_FILE), `${JSON.stringify(this.state, null, 2)}\n`, { mode: 0o600 });
  }
}

async function readState(dir: string): Promise<JoinState> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, JOIN_STATE_FILE), 'utf8')) as Partial<JoinState>;
    return {
      pins: parsed.pins ?? [], ...(parsed.address ? { address: parsed.address } : {}), ...(parsed.token ? { token: parsed.token } : {}),
      ...(parsed.tlsFingerprint ? { tlsFingerprint: parsed.tlsFingerprint } : {}),
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { pins: [] };
    throw new ConclaveError('NODE-STATE-701', { detail: `${JOIN_STATE_FILE}: ${String(err)}`, cause: err });
  }
}
