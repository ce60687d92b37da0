import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { ConclaveError, writeFileDurable } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { tlsCertificateFingerprint } from '@conclave/protocol';
import type { ClientTlsOptions } from '@conclave/protocol';

/** Where a node keeps the orchestrator certificate it pinned from its join string (mode 0600). */
export const ORCHESTRATOR_CERT_FILE = 'orchestrator-tls.pem';

/** How long fetching the certificate may take: one TCP connect and one TLS handshake. */
export const CERT_FETCH_TIMEOUT_MS = 10_000;

/**
 * Reads `--tls-ca`: PEM roots (a private CA, or the orchestrator's self-signed certificate).
 * Checked here, before anything starts: gRPC would report a bad file only as a failed connection, forever.
 */
export async function readTlsCa(path: string): Promise<Buffer> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (err) {
    throw new ConclaveError('NODE-AUTH-581', { detail: `--tls-ca ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, data: { path }, cause: err });
  }
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new ConclaveError('NODE-AUTH-581', { detail: `--tls-ca ${path} is not a PEM certificate`, data: { path }, cause: err });
  }
  return pem;
}

export interface PinnedTlsOptions {
  /** The orchestrator's `host:port`. */
  address: string;
  /** `SHA256:…` of its certificate, from the join string. */
  fingerprint: string;
  dataDir: string;
  logger: Logger;
  /** @default CERT_FETCH_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * The TLS settings for an orchestrator whose join string carried its certificate's digest:
 * the certificate kept in the data dir, or, the first time, the one the orchestrator presents,
 * fetched over a raw TLS connection (unverified: the digest is the check) and kept (0600).
 * A certificate with another digest is NODE-AUTH-580, which the link treats as fatal.
 */
export async function pinnedTls(o: PinnedTlsOptions): Promise<ClientTlsOptions> {
  const path = join(o.dataDir, ORCHESTRATOR_CERT_FILE);
  const stored = await readStored(path);
  if (stored && tlsCertificateFingerprint(stored.raw) === o.fingerprint) return tlsOptionsFor(stored, o.fingerprint);
  const presented = await fetchCertificate(o.address, o.timeoutMs ?? CERT_FETCH_TIMEOUT_MS);
  const actual = tlsCertificateFingerprint(presented.raw);
  if (actual !== o.fingerprint) {
    throw new ConclaveError('NODE-AUTH-580', {
      detail: `the join string pins ${o.fingerprint}, ${o.address} presented ${actual}`,
      data: { address: o.address, expected: o.fingerprint, actual },
    });
  }
  await writeFileDurable(path, presented.toString(), { mode: 0o600 });
  o.logger.info('AUTH', 'orchestrator TLS certificate pinned', { fingerprint: actual, subject: presented.subject, validTo: presented.validTo });
  return tlsOptionsFor(presented, o.fingerprint);
}

async function readStored(path: string): Promise<X509Certificate | undefined> {
  try {
    return new X509Certificate(await readFile(path));
  } catch {
    // Missing, or not a certificate any more: fetched and checked against the pin again.
    return undefined;
  }
}

/**
 * The pin replaces the host-name check; the chain check stays. A self-signed certificate is its
 * own root; one a CA issued is checked against the system roots.
 */
function tlsOptionsFor(cert: X509Certificate, pin: string): ClientTlsOptions {
  const selfSigned = cert.checkIssued(cert) && cert.verify(cert.publicKey);
  const root = selfSigned ? Buffer.from(cert.toString()) : undefined;
  const serverName = nameIn(cert);
  return { pinSha256: pin, ...(root ? { ca: root } : {}), ...(serverName ? { serverName } : {}) };
}

/** A DNS name the certificate carries, sent as SNI (an IP address may not be). */
function nameIn(cert: X509Certificate): string | undefined {
  const dns = /(?:^|,\s*)DNS:([^,\s]+)/.exec(cert.subjectAltName ?? '')?.[1];
  if (dns) return dns;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  return cn && isIP(cn) === 0 ? cn : undefined;
}

/** Opens a TLS connection to `address` without verifying it and returns the leaf certificate. */
export function fetchCertificate(address: string, timeoutMs: number): Promise<X509Certificate> {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const host = match?.[1] ?? match?.[2] ?? address;
  const port = Number(match?.[3]);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'],
      ...(isIP(host) === 0 ? { servername: host } : {}),
    });
    const fail = (detail: string, cause?: unknown) => {
      socket.destroy();
      reject(new ConclaveError('NODE-NET-601', { detail: `${address}: ${detail}`, data: { address }, ...(cause ? { cause } : {}) }));
    };
    const timer = setTimeout(() => fail(`no TLS handshake within ${timeoutMs} ms`), timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      if (!raw) {
        reject(new ConclaveError('NODE-NET-601', { detail: `${address}: presented no TLS certificate`, data: { address } }));
        return;
      }
      resolve(new X509Certificate(raw));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(`TLS: ${err.code ?? err.message}`, err);
    });
  });
}
