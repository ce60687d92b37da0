import { EXIT_OK, formatDurationMs } from '@conclave/common';
import type { JoinToken__Output } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { formatJson, formatKeyValues, formatTable, formatTime, orDash } from './output-format.js';

export interface CreateTokenOptions {
  /** Token lifetime; absent: the orchestrator's default (`--token-ttl`, 1h). */
  ttlMs?: number | undefined;
  json?: boolean;
}

/**
 * `token create`: the join string goes to stdout once (it holds the token; the orchestrator keeps
 * only its hash). `--json` prints `{"join", "expires"}`; the human form adds the board's command.
 */
export async function createTokenCommand(calls: ControlCalls, io: CliIo, options: CreateTokenOptions): Promise<number> {
  // Sub-second lifetimes are rounded up: the wire carries whole seconds, and 0 would mean "default".
  const ttlSeconds = options.ttlMs !== undefined ? Math.max(1, Math.ceil(options.ttlMs / 1000)) : 0;
  const token = await calls.createJoinToken(ttlSeconds);
  const expires = formatTime(Number(token.expiresAtMs));
  if (options.json) {
    io.stdout.write(formatJson({ join: token.join, expires }));
    return EXIT_OK;
  }
  const lifetime = formatDurationMs(Number(token.expiresAtMs) - Number(token.createdAtMs));
  io.stdout.write(
    formatKeyValues([
      ['id', token.id],
      ['expires', `${expires} (valid ${lifetime}, single use)`],
      ['join', token.join],
    ]) +
      '\nOn the board, run once (the join string is a secret; after it joins, the node connects by its key):\n' +
      `  node-agent start --join '${token.join}' --data-dir /var/lib/conclave/node\n`,
  );
  return EXIT_OK;
}

export type TokenState = 'active' | 'used' | 'revoked' | 'expired';

/** One word for a token: used wins over revoked, revoked over expired. */
export function tokenState(token: JoinToken__Output, now: number): TokenState {
  if (token.used) return 'used';
  if (token.revoked) return 'revoked';
  return Number(token.expiresAtMs) <= now ? 'expired' : 'active';
}

export interface TokenJson {
  id: string;
  state: TokenState;
  createdAtMs: number;
  expiresAtMs: number;
  used: boolean;
  revoked: boolean;
  usedBy: string;
}

export function tokenToJson(token: JoinToken__Output, now: number): TokenJson {
  return {
    id: token.id,
    state: tokenState(token, now),
    createdAtMs: Number(token.createdAtMs),
    expiresAtMs: Number(token.expiresAtMs),
    used: token.used,
    revoked: token.revoked,
    usedBy: token.usedBy,
  };
}

export interface ListTokensOptions {
  json?: boolean;
  /** Clock for "expired"; tests pin it. */
  now?: () => number;
}

/** `token list`: live tokens, and used or expired ones for 24 h after expiry. */
export async function listTokensCommand(calls: ControlCalls, io: CliIo, options: ListTokensOptions): Promise<number> {
  const tokens = await calls.listJoinTokens();
  const now = (options.now ?? Date.now)();
  if (options.json) {
    io.stdout.write(formatJson(tokens.map((t) => tokenToJson(t, now))));
    return EXIT_OK;
  }
  if (tokens.length === 0) {
    io.stdout.write('no join tokens; create one with `orchestrator token create`\n');
    return EXIT_OK;
  }
  io.stdout.write(
    formatTable(
      [{ header: 'id' }, { header: 'state' }, { header: 'created' }, { header: 'expires' }, { header: 'used by' }],
      tokens.map((t) => [t.id, tokenState(t, now), formatTime(Number(t.createdAtMs)), formatTime(Number(t.expiresAtMs)), orDash(t.usedBy)]),
    ),
  );
  return EXIT_OK;
}

/** `token revoke ID`: the token can no longer enroll a node. */
export async function revokeTokenCommand(calls: ControlCalls, io: CliIo, id: string, options: ListTokensOptions): Promise<number> {
  const token = await calls.revokeJoinToken(id);
  const now = (options.now ?? Date.now)();
  if (options.json) {
    io.stdout.write(formatJson(tokenToJson(token, now)));
    return EXIT_OK;
  }
  io.stdout.write(
    formatKeyValues([
      ['id', token.id],
      ['state', tokenState(token, now)],
      ['expires', formatTime(Number(token.expiresAtMs))],
      ['used by', orDash(token.usedBy)],
    ]),
  );
  return EXIT_OK;
}
