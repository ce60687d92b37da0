import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConclaveError } from './errors/conclave-error.js';
import type { ErrorCode } from './errors/catalog/index.js';

export const DEFAULT_ENV_PREFIX = 'CONCLAVE_';

export type ConfigSource = 'file' | 'env' | 'flag';

export interface LoadConfigOptions {
  /** Parsed CLI flags, highest precedence; undefined values are ignored. Kebab-case keys are accepted. */
  flags?: Record<string, unknown>;
  /** Usually process.env, passed in by main.ts. @default {} */
  env?: Record<string, string | undefined>;
  /** @default DEFAULT_ENV_PREFIX ('CONCLAVE_') */
  envPrefix?: string;
  /** Path of an optional YAML file, lowest precedence. */
  file?: string;
  /** The catalog code thrown when the configuration is invalid (e.g. 'ORCH-STATE-703'). */
  errorCode: ErrorCode;
}

/** One reason the configuration was refused; values are never echoed, they may be secrets. */
export interface ConfigIssue {
  key: string;
  /** Where the offending value came from, when a source set it. */
  source?: ConfigSource;
  /** The environment variable of a known key; absent for a key the schema does not have. */
  envName?: string;
  message: string;
}

/** `grpcPort` → `CONCLAVE_GRPC_PORT`. */
export function describeEnvName(key: string, envPrefix: string = DEFAULT_ENV_PREFIX): string {
  const snake = key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/[-\s]+/g, '_');
  return envPrefix + snake.toUpperCase();
}

/** `grpc-port` and `grpc_port` → `grpcPort`; camelCase keys pass through. */
export function toCamelKey(key: string): string {
  return key.replace(/[-_]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
}

interface ZodDefLike {
  type: string;
  innerType?: { _zod: { def: ZodDefLike } };
  in?: { _zod: { def: ZodDefLike } };
}

/** The kind of value a field holds under optional/default/nullable wrappers. */
function fieldKind(field: z.ZodType): string {
  let def = (field as unknown as { _zod: { def: ZodDefLike } })._zod.def;
  for (let depth = 0; depth < 10; depth += 1) {
    const inner = def.innerType ?? (def.type === 'pipe' ? def.in : undefined);
    if (!inner) break;
    def = inner._zod.def;
  }
  return def.type;
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off', '']);
const NUMBER_TEXT = /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i;

/**
 * Turns text into the field's kind where the meaning is unambiguous, so that
 * env vars and string flags work without every schema spelling out coercion.
 * z.coerce.boolean() alone would read "false" as true.
 */
function fromText(kind: string, value: string): unknown {
  const lower = value.trim().toLowerCase();
  switch (kind) {
    case 'boolean':
      if (TRUE_WORDS.has(lower)) return true;
      if (FALSE_WORDS.has(lower)) return false;
      return value;
    case 'number':
    case 'int':
      return NUMBER_TEXT.test(value) ? Number(value) : value;
    case 'array':
      return value.trim() === '' ? [] : value.split(',').map((item) => item.trim());
    default:
      return value;
  }
}

function readYamlFile(path: string, errorCode: ErrorCode): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConclaveError(errorCode, { detail: `cannot read config file ${path}`, data: { file: path }, cause });
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
    throw new ConclaveError(errorCode, { detail: `config file ${path} is not valid YAML: ${reason}`, data: { file: path }, cause });
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConclaveError(errorCode, { detail: `config file ${path} must hold a mapping of keys`, data: { file: path } });
  }
  return parsed as Record<string, unknown>;
}

/**
 * Merges a YAML file (lowest), `<prefix><KEY>` env vars, then CLI flags
 * (highest), and validates the result against `schema`. Only keys of the
 * schema are read from the environment. Throws ConclaveError(errorCode)
 * listing every bad key with its source and env name.
 */
export function loadConfig<S extends z.ZodObject>(schema: S, options: LoadConfigOptions): z.output<S> {
  const envPrefix = options.envPrefix ?? DEFAULT_ENV_PREFIX;
  const shape = schema.shape as Record<string, z.ZodType>;
  const merged: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};

  const put = (rawKey: string, value: unknown, source: ConfigSource): void => {
    if (value === undefined) return;
    const key = toCamelKey(rawKey);
    const field = shape[key];
    merged[key] = field && typeof value === 'string' ? fromText(fieldKind(field), value) : value;
    sources[key] = source;
  };

  // A typo'd key in a file would otherwise do nothing at all, silently: it is refused instead.
  const unknownFileKeys: string[] = [];
  if (options.file !== undefined) {
    for (const [key, value] of Object.entries(readYamlFile(options.file, options.errorCode))) {
      if (shape[toCamelKey(key)] === undefined) unknownFileKeys.push(key);
      else put(key, value, 'file');
    }
  }
  const env = options.env ?? {};
  for (const key of Object.keys(shape)) {
    put(key, env[describeEnvName(key, envPrefix)], 'env');
  }
  for (const [key, value] of Object.entries(options.flags ?? {})) put(key, value, 'flag');

  const result = schema.safeParse(merged);
  if (result.success && unknownFileKeys.length === 0) return result.data;

  const known = Object.keys(shape).join(', ');
  const unknownIssues: ConfigIssue[] = unknownFileKeys.map((key) => ({
    key,
    source: 'file',
    message: `unknown key (known keys: ${known})`,
  }));
  const schemaIssues: ConfigIssue[] = (result.success ? [] : result.error.issues).map((issue) => {
    const key = issue.path.length > 0 ? issue.path.map(String).join('.') : '(config)';
    const top = issue.path[0];
    const source = typeof top === 'string' ? sources[top] : undefined;
    return {
      key,
      ...(source ? { source } : {}),
      envName: describeEnvName(typeof top === 'string' ? top : key, envPrefix),
      message: issue.message,
    };
  });
  const issues = [...unknownIssues, ...schemaIssues];
  const detail = issues
    .map((i) => {
      const where = [i.source ? `from ${i.source}` : '', i.envName ? `env ${i.envName}` : ''].filter((w) => w !== '');
      return `${i.key} (${where.join(', ')}): ${i.message}`;
    })
    .join('; ');
  throw new ConclaveError(options.errorCode, { detail, data: { issues }, ...(result.success ? {} : { cause: result.error }) });
}
