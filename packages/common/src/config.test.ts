import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { describeEnvName, loadConfig, toCamelKey } from './config.js';
import { ConclaveError } from './errors/conclave-error.js';

const schema = z.object({
  /** @default 7400 */
  grpcPort: z.coerce.number().int().min(0).max(65535).default(7400),
  redisUrl: z.string().url().optional(),
  dataDir: z.string().default('/var/lib/conclave'),
  appendOnly: z.boolean().default(true),
  models: z.array(z.string()).default([]),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
});

const dir = mkdtempSync(join(tmpdir(), 'conclave-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function yamlFile(text: string): string {
  const path = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, text);
  return path;
}

describe('loadConfig', () => {
  it('applies defaults', () => {
    expect(loadConfig(schema, { errorCode: 'ORCH-STATE-703' })).toEqual({
      grpcPort: 7400,
      dataDir: '/var/lib/conclave',
      appendOnly: true,
      models: [],
      logLevel: 'info',
    });
  });

  it('lets flags beat env and env beat the file', () => {
    const file = yamlFile('grpc-port: 1000\ndataDir: /from/file\nlog_level: debug\nredisUrl: redis://file:6379\n');
    const config = loadConfig(schema, {
      file,
      env: { CONCLAVE_GRPC_PORT: '2000', CONCLAVE_DATA_DIR: '/from/env', CONCLAVE_UNRELATED: 'x' },
      flags: { grpcPort: 3000, dataDir: undefined },
      errorCode: 'ORCH-STATE-703',
    });
    expect(config).toMatchObject({ grpcPort: 3000, dataDir: '/from/env', logLevel: 'debug', redisUrl: 'redis://file:6379' });
  });

  it('reads booleans, numbers and lists from env text', () => {
    const config = loadConfig(schema, {
      env: { CONCLAVE_APPEND_ONLY: 'false', CONCLAVE_MODELS: 'a, b', CONCLAVE_GRPC_PORT: '0' },
      errorCode: 'NODE-STATE-703',
    });
    expect(config).toMatchObject({ appendOnly: false, models: ['a', 'b'], grpcPort: 0 });
    expect(loadConfig(schema, { flags: { 'append-only': 'yes' }, errorCode: 'NODE-STATE-703' }).appendOnly).toBe(true);
  });

  it('honours another env prefix', () => {
    const config = loadConfig(schema, { env: { X_GRPC_PORT: '9', CONCLAVE_GRPC_PORT: '8' }, envPrefix: 'X_', errorCode: 'MODEL-STATE-703' });
    expect(config.grpcPort).toBe(9);
  });

  it('lists every bad key, its source and env name, without echoing values', () => {
    let thrown: unknown;
    try {
      loadConfig(schema, {
        env: { CONCLAVE_GRPC_PORT: 'seventy', CONCLAVE_REDIS_URL: 'not a url with s3cret' },
        flags: { logLevel: 'loud' },
        errorCode: 'ORCH-STATE-703',
      });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConclaveError);
    const err = thrown as ConclaveError;
    expect(err.code).toBe('ORCH-STATE-703');
    expect(err.entry.status).toBe('INVALID_ARGUMENT');
    expect(err.detail).toContain('grpcPort (from env, env CONCLAVE_GRPC_PORT)');
    expect(err.detail).toContain('redisUrl (from env, env CONCLAVE_REDIS_URL)');
    expect(err.detail).toContain('logLevel (from flag, env CONCLAVE_LOG_LEVEL)');
    expect(err.message).not.toContain('s3cret');
    expect((err.data.issues as unknown[]).length).toBe(3);
  });

  it('refuses a missing or malformed file with the error code', () => {
    expect(() => loadConfig(schema, { file: join(dir, 'missing.yaml'), errorCode: 'NODE-STATE-703' })).toThrow(
      /invalid node agent configuration: cannot read config file/,
    );
    expect(() => loadConfig(schema, { file: yamlFile('a: [1,\n'), errorCode: 'NODE-STATE-703' })).toThrow(/not valid YAML/);
    expect(() => loadConfig(schema, { file: yamlFile('- 1\n- 2\n'), errorCode: 'NODE-STATE-703' })).toThrow(/mapping/);
    expect(loadConfig(schema, { file: yamlFile(''), errorCode: 'NODE-STATE-703' }).grpcPort).toBe(7400);
  });
});

describe('loadConfig with a file', () => {
  it('refuses a key the schema does not have, naming it and the known keys', () => {
    const file = join(dir, 'typo.yaml');
    writeFileSync(file, 'grpcPrt: 7500\ngrpc-port: 7600\n');
    let thrown: unknown;
    try {
      loadConfig(schema, { file, errorCode: 'ORCH-STATE-703' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConclaveError);
    const err = thrown as ConclaveError;
    expect(err.code).toBe('ORCH-STATE-703');
    expect(err.detail).toMatch(/^grpcPrt \(from file\): unknown key \(known keys: grpcPort, redisUrl, dataDir/);
    // The known key in its kebab spelling is still read, not refused.
    expect(err.detail).not.toContain('grpc-port');
  });

  it('lists unknown keys together with invalid values', () => {
    const file = join(dir, 'both.yaml');
    writeFileSync(file, 'logLevl: debug\ngrpcPort: nine\n');
    expect(() => loadConfig(schema, { file, errorCode: 'NODE-STATE-703' })).toThrow(
      /logLevl \(from file\): unknown key .*; grpcPort \(from file, env CONCLAVE_GRPC_PORT\)/,
    );
  });
});

describe('names', () => {
  it('maps keys to env names and back', () => {
    expect(describeEnvName('grpcPort')).toBe('CONCLAVE_GRPC_PORT');
    expect(describeEnvName('redisURL')).toBe('CONCLAVE_REDIS_URL');
    expect(describeEnvName('maxTokens2', 'X_')).toBe('X_MAX_TOKENS2');
    expect(toCamelKey('grpc-port')).toBe('grpcPort');
    expect(toCamelKey('log_level')).toBe('logLevel');
    expect(toCamelKey('dataDir')).toBe('dataDir');
  });
});
