// TLS between node and orchestrator: a real orchestrator serving a self-signed certificate made
// with openssl, real gRPC, real redis-server, node agents in this process. Build first (`pnpm build`):
// the orchestrator and inference workers run from dist.
import { execFileSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisServerHandle } from '@conclave/common';
import { createControlClient, decodeJoinString, encodeJoinString, tlsCertificateFingerprint } from '@conclave/protocol';
import type { ControlClient, Job__Output, ModelInfo__Output } from '@conclave/protocol';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { affineModel, startRedis, startTestNode, startTestOrchestrator, tempDir, waitUntil } from '@conclave/testing';
import { ORCHESTRATOR_CERT_FILE } from './orchestrator-tls.js';

const OPENSSL = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function call<T>(fn: (cb: (err: grpc.ServiceError | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}

describe.skipIf(!OPENSSL)('TLS to the orchestrator (needs openssl)', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  let certPath: string;
  let certPem: string;
  let control: ControlClient;

  beforeAll(async () => {
    const dir = await tempDir('conclave-tls-');
    cleanups.push(dir.remove);
    certPath = join(dir.path, 'cert.pem');
    const keyPath = join(dir.path, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', keyPath, '-out', certPath, '-subj', '/CN=orchestrator.test',
      '-addext', 'subjectAltName=DNS:orchestrator.test,IP:127.0.0.1',
    ], { stdio: 'ignore' });
    certPem = await readFile(certPath, 'utf8');
    redis = await startRedis();
    cleanups.push(() => redis.stop());
    orchestrator = await startTestOrchestrator({ redisUrl: redis.url, heartbeatIntervalMs: 250, tls: { certPath, keyPath } });
    cleanups.push(() => orchestrator.close());
    control = createControlClient(orchestrator.address, { tls: { ca: Buffer.from(certPem) }, operatorToken: orchestrator.operatorToken });
    cleanups.push(async () => control.close());
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('the join string carries the certificate digest; a node joined with it pins the certificate, registers and runs a job', async () => {
    const joinString = await orchestrator.createJoinString();
    expect(decodeJoinString(joinString).tlsFingerprint).toBe(tlsCertificateFingerprint(certPem));
    const node = await startTestNode({ orchestrator, join: joinString });
    cleanups.push(() => node.close());
    await waitUntil(() => node.connected, { what: 'the pinned node to register', timeoutMs: 20_000 });

    const stored = join(node.dataDir, ORCHESTRATOR_CERT_FILE);
    expect(await readFile(stored, 'utf8')).toBe(certPem);
    expect((await stat(stored)).mode & 0o777).toBe(0o600);

    const model = affineModel({ seed: 41 });
    const info = await new Promise<ModelInfo__Output>((resolve, reject) => {
      const stream = control.AddModel((err, added) => (err ? reject(err) : resolve(added as ModelInfo__Output)));
      stream.write({ header: { name: 'tls-affine', size: model.bytes.byteLength } });
      stream.write({ data: Buffer.from(model.bytes) });
      stream.end();
    });
    expect(info.name).toBe('tls-affine');
    const inputs = model.sampleInputs(2);
    const wire = Object.fromEntries(Object.entries(inputs).map(([name, t]) => [
      name, { dtype: t.dtype, dims: [...t.dims], raw: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) },
    ]));
    const submitted = await call<Job__Output>((cb) => control.SubmitJob({ infer: { model: 'tls-affine', inputs: wire } }, cb));
    const done = await waitUntil(async () => {
      const job = await call<Job__Output>((cb) => control.GetJob({ id: submitted.id }, cb));
      return job.state === 'JOB_STATE_COMPLETED' || job.state === 'JOB_STATE_FAILED' ? job : undefined;
    }, { what: 'the job to finish', timeoutMs: 30_000 });
    expect(done.state).toBe('JOB_STATE_COMPLETED');
    expect(done.node).toBe(node.nodeId);

    // A later start uses the stored certificate and needs no join string.
    await node.close();
    const again = await startTestNode({ orchestrator, dataDir: node.dataDir });
    cleanups.push(() => again.close());
    await waitUntil(() => again.connected, { what: 'the restarted node to register', timeoutMs: 20_000 });
    await again.close();
  });

  it('a node started with --tls-ca registers', async () => {
    const dir = await tempDir('conclave-tls-ca-');
    cleanups.push(dir.remove);
    const ca = join(dir.path, 'orchestrator.pem');
    await writeFile(ca, certPem);
    // An old-style join string, without the certificate digest: the CA file is all the node has.
    const { tlsFingerprint: _dropped, ...plain } = decodeJoinString(await orchestrator.createJoinString());
    const node = await startTestNode({ orchestrator, join: encodeJoinString(plain), tlsCa: ca });
    cleanups.push(() => node.close());
    await waitUntil(() => node.connected, { what: 'the --tls-ca node to register', timeoutMs: 20_000 });
    await node.close();
  });

  it('a node whose join string pins another certificate stops with NODE-AUTH-580 and does not retry', async () => {
    const info = decodeJoinString(await orchestrator.createJoinString());
    const wrong = encodeJoinString({ ...info, tlsFingerprint: `SHA256:${Buffer.alloc(32, 7).toString('base64url')}` });
    const node = await startTestNode({ orchestrator, join: wrong });
    cleanups.push(() => node.close());
    const fatal = await node.fatal;
    expect(fatal.code).toBe('NODE-AUTH-580');
    expect(fatal.message).toContain(`${info.address} presented ${tlsCertificateFingerprint(certPem)}`);
    expect(node.connected).toBe(false);
    await node.close();
  });

  it('a node without TLS settings is refused by a TLS gateway and keeps retrying (not fatal)', async () => {
    const { tlsFingerprint: _dropped, ...plain } = decodeJoinString(await orchestrator.createJoinString());
    const node = await startTestNode({ orchestrator, join: encodeJoinString(plain) });
    cleanups.push(() => node.close());
    const settled = await Promise.race([node.fatal.then(() => 'fatal'), new Promise((r) => setTimeout(() => r('retrying'), 1_500))]);
    expect(settled).toBe('retrying');
    expect(node.connected).toBe(false);
    await node.close();
  });
});

describe.skipIf(!OPENSSL)('TLS to an orchestrator whose certificate a private CA issued (needs openssl)', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  let orchestrator: OrchestratorHandle;
  let leafPem: string;
  let caPem: string;

  beforeAll(async () => {
    const dir = await tempDir('conclave-tls-private-ca-');
    cleanups.push(dir.remove);
    const file = (name: string): string => join(dir.path, name);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    execFileSync('openssl', ['req', '-x509', ...ec, '-days', '1', '-keyout', file('ca.key'), '-out', file('ca.pem'), '-subj', '/CN=Conclave Test Private CA'], { stdio: 'ignore' });
    execFileSync('openssl', ['req', ...ec, '-keyout', file('key.pem'), '-out', file('leaf.csr'), '-subj', '/CN=orchestrator.test'], { stdio: 'ignore' });
    await writeFile(file('leaf.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:orchestrator.test,IP:127.0.0.1\n');
    execFileSync('openssl', [
      'x509', '-req', '-in', file('leaf.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
      '-days', '1', '-extfile', file('leaf.ext'), '-out', file('leaf.pem'),
    ], { stdio: 'ignore' });
    leafPem = await readFile(file('leaf.pem'), 'utf8');
    caPem = await readFile(file('ca.pem'), 'utf8');
    // The orchestrator sends the chain: its --tls-cert holds the leaf, then the CA.
    await writeFile(file('chain.pem'), leafPem + caPem);
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    orchestrator = await startTestOrchestrator({
      redisUrl: redis.url, heartbeatIntervalMs: 250, tls: { certPath: file('chain.pem'), keyPath: file('key.pem') },
    });
    cleanups.push(() => orchestrator.close());
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('a node joined with the pin registers, keeps leaf and CA, and reconnects from them (or refetches from a leaf alone)', async () => {
    const joinString = await orchestrator.createJoinString();
    expect(decodeJoinString(joinString).tlsFingerprint).toBe(tlsCertificateFingerprint(leafPem));
    const node = await startTestNode({ orchestrator, join: joinString });
    cleanups.push(() => node.close());
    await waitUntil(() => node.connected, { what: 'the pinned node to register', timeoutMs: 20_000 });
    const stored = join(node.dataDir, ORCHESTRATOR_CERT_FILE);
    expect(await readFile(stored, 'utf8')).toBe(leafPem + caPem);
    await node.close();

    const again = await startTestNode({ orchestrator, dataDir: node.dataDir });
    cleanups.push(() => again.close());
    await waitUntil(() => again.connected, { what: 'the restarted node to register', timeoutMs: 20_000 });
    await again.close();

    // The leaf alone, as an older agent kept it: the chain is fetched again and kept.
    await writeFile(stored, leafPem, { mode: 0o600 });
    const upgraded = await startTestNode({ orchestrator, dataDir: node.dataDir });
    cleanups.push(() => upgraded.close());
    await waitUntil(() => upgraded.connected, { what: 'the node with a leaf-only file to register', timeoutMs: 20_000 });
    expect(await readFile(stored, 'utf8')).toBe(leafPem + caPem);
    await upgraded.close();
  }, 60_000);
});
