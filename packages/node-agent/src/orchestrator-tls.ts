import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { ConclaveError, writeFileDurable } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { tlsCertificateFingerprint } from '@conclave/protocol';
import type { ClientTlsOptions } from '@conclave/protocol';

/**
 * Where a node keeps the orchestrator certificate it pinned from its join string (mode 0600), with
 * the chain the orchestrator presented after it (PEM, leaf first).
 */
export const ORCHESTRATOR_CERT_FILE = 'orchestrator-tls.pem';

/** How long fetching the certificate may take: one TCP connect and one TLS handshake. */
export const CERT_FETCH_TIMEOUT_MS = 10_000;

/** Certificates kept from a presented chain at most; real ones have two to four. */
const MAX_CHAIN_LENGTH = 8;

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
 * fetched over a raw TLS connection (unverified: the digest is the check) and kept (0600) with
 * the chain it came with. A certificate with another digest is NODE-AUTH-580, which the link
 * treats as fatal.
 */
export async function pinnedTls(o: PinnedTlsOptions): Promise<ClientTlsOptions> {
  const path = join(o.dataDir, ORCHESTRATOR_CERT_FILE);
  const stored = await readStored(path);
  // A file that ends below a root (a leaf alone, kept by an older agent) is fetched again for its chain.
  if (stored?.[0] && tlsCertificateFingerprint(stored[0].raw) === o.fingerprint && isSelfSigned(stored.at(-1))) {
    return tlsOptionsFor(stored, o.fingerprint);
  }
  const presented = await fetchCertificateChain(o.address, o.timeoutMs ?? CERT_FETCH_TIMEOUT_MS);
  const [leaf] = presented;
  const actual = tlsCertificateFingerprint(leaf.raw);
  if (actual !== o.fingerprint) {
    throw new ConclaveError('NODE-AUTH-580', {
      detail: `the join string pins ${o.fingerprint}, ${o.address} presented ${actual}`,
      data: { address: o.address, expected: o.fingerprint, actual },
    });
  }
  await writeFileDurable(path, presented.map((c) => c.toString()).join(''), { mode: 0o600 });
  o.logger.info('AUTH', 'orchestrator TLS certificate pinned', {
    fingerprint: actual, subject: leaf.subject, issuer: leaf.issuer, validTo: leaf.validTo, chain: presented.length,
  });
  return tlsOptionsFor(presented, o.fingerprint);
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g;

async function readStored(path: string): Promise<X509Certificate[] | undefined> {
  try {
    const pems = (await readFile(path, 'utf8')).match(PEM_CERTIFICATE) ?? [];
    const chain = pems.map((pem) => new X509Certificate(pem));
    return chain.length > 0 ? chain : undefined;
  } catch {
    // Missing, or not a certificate any more: fetched and checked against the pin again.
    return undefined;
  }
}

function isSelfSigned(cert: X509Certificate | undefined): boolean {
  return cert !== undefined && cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/**
 * With a pin the pin is the check: the leaf must have the pinned digest (the channel's
 * checkServerIdentity), and the top of the chain the orchestrator presented is the one root,
 * so a certificate from a private CA connects as a self-signed one does. The chain is still
 * verified up to that root (signatures, validity dates). A chain that does not end in a
 * self-signed certificate (the server left out a public root) is checked against the system roots.
 */
function tlsOptionsFor(chain: readonly X509Certificate[], pin: string): ClientTlsOptions {
  const top = chain.at(-1);
  const root = top !== undefined && isSelfSigned(top) ? Buffer.from(top.toString()) : undefined;
  const serverName = chain[0] ? nameIn(chain[0]) : undefined;
  return { pinSha256: pin, ...(root ? { ca: root } : {}), ...(serverName ? { serverName } : {}) };
}

/** A DNS name the certificate carries, sent as SNI (an IP address may not be). */
function nameIn(cert: X509Certificate): string | undefined {
  const dns = /(?:^|,\s*)DNS:([^,\s]+)/.exec(cert.subjectAltName ?? '')?.[1];
  if (dns) return dns;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  return cn && isIP(cn) === 0 ? cn : undefined;
}

/**
 * Opens a TLS connection to `address` without verifying it and returns the certificates it
 * presented: the leaf first, then each issuer in turn (as far as the server sent them, or Node
 * found them among the system roots).
 */
export function fetchCertificateChain(address: string, timeoutMs: number): Promise<[X509Certificate, ...X509Certificate[]]> {
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
      const peer = socket.getPeerCertificate(true);
      socket.destroy();
      if (!peer.raw) {
        reject(new ConclaveError('NODE-NET-601', { detail: `${address}: presented no TLS certificate`, data: { address } }));
        return;
      }
      const chain: [X509Certificate, ...X509Certificate[]] = [new X509Certificate(peer.raw)];
      // A root's issuerCertificate is itself; the walk is bounded in case a chain loops.
      for (let cert = peer; cert.issuerCertificate?.raw && !cert.issuerCertificate.raw.equals(cert.raw) && chain.length < MAX_CHAIN_LENGTH;) {
        cert = cert.issuerCertificate;
        chain.push(new X509Certificate(cert.raw));
      }
      resolve(chain);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(`TLS: ${err.code ?? err.message}`, err);
    });
  });
}
