import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { toServiceError } from './grpc-errors.js';
import { writeSecretFileOnce } from './secret-file.js';

/** File name of the operator token inside the orchestrator's data dir. */
export const OPERATOR_TOKEN_FILE = 'operator-token';

/** 32 random bytes: as strong as a join token. */
export const OPERATOR_TOKEN_BYTES = 32;

/** Shorter tokens (from the environment or an edited file) are refused: they could be guessed. */
export const MIN_OPERATOR_TOKEN_LENGTH = 16;

const TOKEN_TEXT = /^[\x21-\x7e]+$/;

export interface OperatorTokenOptions {
  dataDir: string;
  /** CONCLAVE_OPERATOR_TOKEN as main.ts read it; wins over the file when set. */
  fromEnv?: string | undefined;
  /** Told where a new token was written (never the token). */
  logger?: Logger;
}

/**
 * The Control API's bearer token: `fromEnv` when given, else `<dataDir>/operator-token`,
 * generated at first start (32 random bytes, base64url) with mode 0600. A file that group or
 * others may read is refused (ORCH-AUTH-554), as SSH refuses such keys; a malformed token is
 * ORCH-AUTH-555. Synchronous: it runs once at start-up, before the server listens.
 */
export function loadOrCreateOperatorToken(options: OperatorTokenOptions): string {
  if (options.fromEnv !== undefined && options.fromEnv !== '') {
    return validToken(options.fromEnv.trim(), 'CONCLAVE_OPERATOR_TOKEN');
  }
  const path = join(options.dataDir, OPERATOR_TOKEN_FILE);
  try {
    return readOperatorTokenFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(OPERATOR_TOKEN_BYTES).toString('base64url');
  if (!writeSecretFileOnce(path, token)) return readOperatorTokenFile(path);
  options.logger?.info('AUTH', 'created operator token', { path });
  return token;
}

/** Reads an existing token file, enforcing mode 0600 (no bits for group or others). */
export function readOperatorTokenFile(path: string): string {
  const info = statSync(path);
  if (!info.isFile()) throw new ConclaveError('ORCH-AUTH-555', { detail: `${path} is not a regular file`, data: { path } });
  // Windows has no POSIX modes to check; everywhere else any group/other bit is refused.
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
    throw new ConclaveError('ORCH-AUTH-554', {
      detail: `${path} has mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}`,
      data: { path },
    });
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConclaveError('ORCH-AUTH-555', { detail: `cannot read ${path}`, data: { path }, cause });
  }
  return validToken(text.trim(), path);
}

function validToken(token: string, source: string): string {
  if (token.length < MIN_OPERATOR_TOKEN_LENGTH || !TOKEN_TEXT.test(token)) {
    throw new ConclaveError('ORCH-AUTH-555', {
      detail: `${source}: want at least ${MIN_OPERATOR_TOKEN_LENGTH} printable characters without spaces`,
      data: { source },
    });
  }
  return token;
}

/** Metadata key of the bearer token (lower case, as HTTP/2 carries it). */
export const AUTHORIZATION_METADATA_KEY = 'authorization';

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** What went wrong, for the orchestrator's log only: the client sees one message for both. */
export type OperatorAuthFailure = 'missing' | 'mismatch';

/**
 * Checks `authorization: Bearer <token>` against `expected`, comparing SHA-256 digests with
 * `timingSafeEqual` (equal lengths whatever was sent, so neither length nor content leaks
 * through timing). Throws ORCH-AUTH-553; `data.reason` says missing or mismatch, for the log.
 */
export function checkOperatorToken(metadata: grpc.Metadata, expected: string): void {
  const values = metadata.get(AUTHORIZATION_METADATA_KEY);
  const match = values.length === 1 && typeof values[0] === 'string' ? BEARER.exec(values[0]) : null;
  const presented = match?.[1];
  const reason: OperatorAuthFailure | undefined =
    presented === undefined ? 'missing' : operatorTokenMatches(presented, expected) ? undefined : 'mismatch';
  if (reason) {
    throw new ConclaveError('ORCH-AUTH-553', {
      detail: 'send "authorization: Bearer <token>" with the token from <data-dir>/operator-token',
      data: { reason },
    });
  }
}

/**
 * Whether `presented` is the operator token, comparing SHA-256 digests with `timingSafeEqual`
 * (equal lengths whatever was sent, so neither length nor content leaks through timing).
 */
export function operatorTokenMatches(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

/** `Authorization: Bearer <token>` as HTTP carries it: the token, or undefined for anything else. */
export function bearerTokenOf(header: string | undefined): string | undefined {
  return header === undefined ? undefined : BEARER.exec(header)?.[1];
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** How the Control API is reached: over TLS, or plaintext (then loopback only, unless the operator says otherwise). */
export interface ControlTransport {
  tls: boolean;
  /** `--insecure-control`: plaintext callers from the network are let in. */
  insecureControl: boolean;
}

/**
 * Refuses a plaintext call from off this host (ORCH-AUTH-571): its bearer token has crossed
 * the network in the clear, and answering would teach the caller that it works.
 */
export function checkTransport(peer: string, transport: ControlTransport): void {
  if (transport.tls || transport.insecureControl || isLoopbackPeer(peer)) return;
  throw new ConclaveError('ORCH-AUTH-571', { detail: `caller ${peer}`, data: { reason: 'plaintext-remote' } });
}

/** `ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `[::ffff:127.0.0.1]:5000`, `unix:…` are this host. */
export function isLoopbackPeer(peer: string): boolean {
  const address = peer.replace(/^(ipv4|ipv6):/, '');
  if (address.startsWith('unix:')) return true;
  const host = (/^\[(.*)\](?::\d+)?$/.exec(address)?.[1] ?? address.replace(/:\d+$/, '')).toLowerCase();
  return host === '::1' || /^127\./.test(host) || /^::ffff:127\./.test(host) || host === 'localhost';
}

/** Every Control method's path starts with this; the node gateway's do not. */
const CONTROL_PATH_PREFIX = '/conclave.v1.Control/';

/**
 * A server interceptor that answers every Control call without the operator token
 * UNAUTHENTICATED (ORCH-AUTH-553), and a plaintext one from off this host PERMISSION_DENIED
 * (ORCH-AUTH-571, unless TLS or `--insecure-control`), on its headers: the handler never runs,
 * and not a byte of the request is read, so a stranger cannot make the orchestrator buffer
 * request bodies. The refusal is logged with the method, peer and reason; never the token.
 * NodeGateway calls pass through: they authenticate in their own handshake.
 */
export function operatorAuthInterceptor(token: string, logger: Logger, transport: ControlTransport = { tls: false, insecureControl: false }): grpc.ServerInterceptor {
  return (method, call) => {
    if (!method.path.startsWith(CONTROL_PATH_PREFIX)) return new grpc.ServerInterceptingCall(call);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({
        onReceiveMetadata: (metadata, passOn) => {
          try {
            checkTransport(call.getPeer(), transport);
            checkOperatorToken(metadata, token);
          } catch (err) {
            const name = method.path.slice(CONTROL_PATH_PREFIX.length);
            logger.failure(err, { method: name, peer: call.getPeer(), reason: (err as ConclaveError).data.reason }, 'warn');
            call.sendStatus(toServiceError(err, logger) as grpc.StatusObject);
            return;
          }
          passOn(metadata);
        },
      }),
    });
  };
}
