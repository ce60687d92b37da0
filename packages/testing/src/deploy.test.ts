// Keeps deploy/ (compose, Kubernetes, systemd) and the commands in the operations guide true to the
// code: every flag they pass is one the built CLI accepts (from its own --help), every CONCLAVE_*
// variable they set is one the CLIs or docs/configuration.md know, and the ports are the defaults
// of DESIGN.md. Needs the built CLIs (`pnpm build`; `pnpm test` builds first).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as yaml from 'yaml';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DEPLOY = join(ROOT, 'deploy');

/** DESIGN.md "Ports and names". */
const PORTS = { grpc: 7400, orchestratorHttp: 7401, modelServer: 7402, nodeAgentHttp: 7403 } as const;


const CLIS = ['orchestrator', 'node-agent', 'model-server'] as const;
type Cli = (typeof CLIS)[number];

const isCli = (word: string): word is Cli => (CLIS as readonly string[]).includes(word);

function mainJs(cli: Cli): string {
  return join(ROOT, 'packages', cli, 'dist', 'main.js');
}

const helpCache = new Map<string, string>();

/** `<cli> <words…> --help` from the built CLI; '' when the command does not exist. */
function help(cli: Cli, words: readonly string[]): string {
  const key = [cli, ...words].join(' ');
  let text = helpCache.get(key);
  if (text === undefined) {
    try {
      text = execFileSync(process.execPath, [mainJs(cli), ...words, '--help'], {
        encoding: 'utf8',
        timeout: 30_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch {
      text = '';
    }
    helpCache.set(key, text);
  }
  return text;
}

/** The long flags a help text lists as options (`  --redis-url <url>`, `  -h, --help`). */
function optionFlags(helpText: string): Set<string> {
  const flags = new Set<string>();
  for (const line of helpText.split('\n')) {
    const match = /^ {2}(?:-[a-zA-Z], )?(--[a-z][a-z0-9-]*)/.exec(line);
    if (match?.[1]) flags.add(match[1]);
  }
  return flags;
}

/** `(default 7400` in the description of `flag`, which may wrap over several lines. */
function optionDefault(helpText: string, flag: string): number | undefined {
  const lines = helpText.split('\n');
  const start = lines.findIndex((line) => new RegExp(`^ {2}(?:-[a-zA-Z], )?${flag}\\b`).test(line));
  if (start < 0) return undefined;
  let block = lines[start] ?? '';
  for (const line of lines.slice(start + 1)) {
    if (/^ {2}-/.test(line) || line.trim() === '') break;
    block += ` ${line.trim()}`;
  }
  const match = /default:? (\d+)/.exec(block);
  return match?.[1] ? Number(match[1]) : undefined;
}

/** One CLI call found in a deploy file or a doc: `<cli> <words…> <args…>`. */
interface Invocation {
  source: string;
  cli: Cli;
  words: string[];
  args: string[];
}

/**
 * Finds the CLI call in a list of tokens: the last token that names a CLI (`orchestrator`, or
 * `…/packages/orchestrator/dist/main.js`) and is followed by a command word. The last one, so that
 * `docker compose exec orchestrator orchestrator nodes list` finds the CLI, not the service.
 */
function findInvocation(tokens: readonly string[], source: string): Invocation | undefined {
  for (let i = tokens.length - 1; i >= 0; i -= 1) {
    const token = tokens[i] ?? '';
    const fromPath = /\/packages\/([a-z-]+)\/dist\/main\.js$/.exec(token)?.[1];
    const cli = fromPath ?? token;
    if (!isCli(cli)) continue;
    const rest = tokens.slice(i + 1);
    const words: string[] = [];
    while (words.length < 2 && /^[a-z][a-z-]*$/.test(rest[words.length] ?? '')) words.push(rest[words.length]!);
    if (words.length === 0) continue;
    return { source, cli, words, args: rest.slice(words.length) };
  }
  return undefined;
}

/** Problems with one invocation: an unknown command, or flags its --help does not list. */
function checkInvocation(inv: Invocation): string[] {
  const where = `${inv.source}: ${inv.cli} ${inv.words.join(' ')}`;
  // The longest prefix of the words that is a command of its own (`nodes approve`, not `nodes`).
  for (let n = inv.words.length; n >= 1; n -= 1) {
    const words = inv.words.slice(0, n);
    const text = help(inv.cli, words);
    const usage = text.split('\n').find((line) => line.startsWith('Usage: ')) ?? '';
    if (!usage.startsWith(`Usage: ${inv.cli} ${words.join(' ')} `)) continue;
    if (usage.includes('[command]')) return [`${where}: "${words.join(' ')}" needs a subcommand`];
    const accepted = optionFlags(text);
    const args = [...inv.words.slice(n), ...inv.args];
    return args
      .filter((arg) => arg.startsWith('--'))
      .map((arg) => arg.split('=')[0]!)
      .filter((flag) => !accepted.has(flag))
      .map((flag) => `${where}: unknown flag ${flag} (accepted: ${[...accepted].join(' ')})`);
  }
  return [`${where}: no such command`];
}

/** The value after `flag` in `args` (`--port 7402`, `--port=7402`). */
function flagValue(args: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i]!;
    if (arg === flag) return args[i + 1];
    if (arg.startsWith(`${flag}=`)) return arg.slice(flag.length + 1);
  }
  return undefined;
}

function readDeploy(path: string): string {
  return readFileSync(join(DEPLOY, path), 'utf8');
}

type Json = Record<string, unknown>;
const asRecord = (x: unknown): Json => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Json) : {});
const asArray = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const asStrings = (x: unknown): string[] => asArray(x).map((item) => String(item));

// --- the deploy files, parsed -------------------------------------------------------------------

interface ComposeService {
  name: string;
  command: string[];
  ports: string[];
  healthcheck: string[];
  environment: Record<string, string>;
}

function composeServices(): ComposeService[] {
  const doc = asRecord(yaml.parse(readDeploy('compose/compose.yaml'), { merge: true }));
  return Object.entries(asRecord(doc.services)).map(([name, raw]) => {
    const service = asRecord(raw);
    const env = service.environment;
    const environment: Record<string, string> = {};
    if (Array.isArray(env)) {
      for (const item of asStrings(env)) {
        const [key, ...value] = item.split('=');
        environment[key!] = value.join('=');
      }
    } else {
      for (const [key, value] of Object.entries(asRecord(env))) environment[key] = String(value);
    }
    return {
      name,
      command: asStrings(service.command),
      ports: asStrings(service.ports),
      healthcheck: asStrings(asRecord(service.healthcheck).test),
      environment,
    };
  });
}

interface K8sContainer {
  source: string;
  workload: string;
  labels: Json;
  tokens: string[];
  env: { name: string; value?: string }[];
  ports: Map<string, number>;
  probes: Record<string, { path: string; port: string | number } | undefined>;
}

const K8S_FILES = ['redis.yaml', 'orchestrator.yaml', 'model-server.yaml'];

function k8sObjects(): { file: string; object: Json }[] {
  const objects: { file: string; object: Json }[] = [];
  for (const file of K8S_FILES) {
    for (const doc of yaml.parseAllDocuments(readDeploy(`kubernetes/${file}`))) {
      expect(doc.errors, `kubernetes/${file}`).toEqual([]);
      const object = asRecord(doc.toJS());
      if (Object.keys(object).length > 0) objects.push({ file, object });
    }
  }
  return objects;
}

function k8sContainers(): K8sContainer[] {
  const out: K8sContainer[] = [];
  for (const { file, object } of k8sObjects()) {
    if (!['Deployment', 'StatefulSet'].includes(String(object.kind))) continue;
    const template = asRecord(asRecord(object.spec).template);
    const labels = asRecord(asRecord(template.metadata).labels);
    for (const raw of asArray(asRecord(template.spec).containers)) {
      const c = asRecord(raw);
      const probe = (key: string) => {
        const get = asRecord(asRecord(c[key]).httpGet);
        return get.path === undefined ? undefined : { path: String(get.path), port: get.port as string | number };
      };
      out.push({
        source: `kubernetes/${file} ${String(asRecord(object.metadata).name)}/${String(c.name)}`,
        workload: String(asRecord(object.metadata).name),
        labels,
        tokens: [...asStrings(c.command), ...asStrings(c.args)],
        env: asArray(c.env).map((e) => {
          const entry = asRecord(e);
          return { name: String(entry.name), ...(entry.value !== undefined ? { value: String(entry.value) } : {}) };
        }),
        ports: new Map(asArray(c.ports).map((p) => [String(asRecord(p).name), Number(asRecord(p).containerPort)])),
        probes: { startup: probe('startupProbe'), readiness: probe('readinessProbe'), liveness: probe('livenessProbe') },
      });
    }
  }
  return out;
}

function systemdExecStarts(): { source: string; tokens: string[] }[] {
  return readdirSync(join(DEPLOY, 'systemd'))
    .filter((file) => file.endsWith('.service'))
    .sort()
    .map((file) => {
      const line = /^ExecStart=(.+)$/m.exec(readDeploy(`systemd/${file}`))?.[1] ?? '';
      return { source: `systemd/${file}`, tokens: line.trim().split(/\s+/) };
    });
}

/** Shell command lines inside fenced code blocks: continuations joined, comments and prompts dropped. */
function codeBlockCommands(markdown: string): string[] {
  const commands: string[] = [];
  for (const block of markdown.matchAll(/^```[a-z]*\n([\s\S]*?)^```/gm)) {
    const joined = (block[1] ?? '').replace(/\\\n\s*/g, ' ');
    for (const raw of joined.split('\n')) {
      const line = raw.replace(/^\s*\$ /, '').replace(/(^|\s)#.*$/, '').trim();
      if (line) commands.push(...line.split(/\s*(?:\|\||&&|\||;)\s*/));
    }
  }
  return commands;
}

function docInvocations(): Invocation[] {
  const files = [
    join(ROOT, 'docs/operations.md'),
    ...readdirSync(DEPLOY, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => join(DEPLOY, entry.name, 'README.md')),
  ].filter((file) => existsSync(file));
  const out: Invocation[] = [];
  for (const file of files) {
    for (const command of codeBlockCommands(readFileSync(file, 'utf8'))) {
      const tokens = command.split(/\s+/).map((token) => token.replace(/^['"]|['"]$/g, ''));
      const inv = findInvocation(tokens, file.slice(ROOT.length + 1));
      if (inv) out.push(inv);
    }
  }
  return out;
}

function composeInvocations(): Invocation[] {
  return composeServices()
    .map((s) => findInvocation(s.command, `compose.yaml services.${s.name}`))
    .filter((inv): inv is Invocation => inv !== undefined);
}

function k8sInvocations(): Invocation[] {
  return k8sContainers()
    .map((c) => findInvocation(c.tokens, c.source))
    .filter((inv): inv is Invocation => inv !== undefined);
}

function systemdInvocations(): Invocation[] {
  return systemdExecStarts()
    .map((u) => findInvocation(u.tokens, u.source))
    .filter((inv): inv is Invocation => inv !== undefined);
}

// --- the tests ----------------------------------------------------------------------------------

describe('deploy/', () => {
  it('has the built CLIs to check against', () => {
    for (const cli of CLIS) expect(existsSync(mainJs(cli)), `${mainJs(cli)} (run pnpm build)`).toBe(true);
  });

  it('runs every CLI with flags its `start --help` lists: compose, Kubernetes, systemd', () => {
    const invocations = [...composeInvocations(), ...k8sInvocations(), ...systemdInvocations()];
    const where = invocations.map((inv) => `${inv.source}: ${inv.cli} ${inv.words.join(' ')}`);
    expect(where).toEqual(
      expect.arrayContaining([
        'compose.yaml services.orchestrator: orchestrator start',
        'compose.yaml services.model-server: model-server start',
        expect.stringMatching(/^kubernetes\/orchestrator\.yaml .*: orchestrator start$/),
        expect.stringMatching(/^kubernetes\/model-server\.yaml .*: model-server start$/),
        'systemd/conclave-node-agent.service: node-agent start',
        'systemd/conclave-orchestrator.service: orchestrator start',
        'systemd/conclave-model-server.service: model-server start',
      ]),
    );
    for (const inv of invocations) expect(inv.words, inv.source).toEqual(['start']);
    expect(invocations.flatMap(checkInvocation)).toEqual([]);
  });

  it('documents only commands and flags the CLIs accept (docs/operations.md, deploy/*/README.md)', () => {
    const invocations = docInvocations();
    expect(invocations.length).toBeGreaterThan(5);
    expect(invocations.flatMap(checkInvocation)).toEqual([]);
  });

  it('uses the default ports of DESIGN.md, which are the CLIs’ defaults', () => {
    expect(optionDefault(help('orchestrator', ['start']), '--grpc-port')).toBe(PORTS.grpc);
    expect(optionDefault(help('orchestrator', ['start']), '--http-port')).toBe(PORTS.orchestratorHttp);
    expect(optionDefault(help('model-server', ['start']), '--port')).toBe(PORTS.modelServer);
    expect(optionDefault(help('node-agent', ['start']), '--http-port')).toBe(PORTS.nodeAgentHttp);

    const portFlags: Record<Cli, Record<string, number>> = {
      orchestrator: { '--grpc-port': PORTS.grpc, '--http-port': PORTS.orchestratorHttp },
      'model-server': { '--port': PORTS.modelServer },
      'node-agent': { '--http-port': PORTS.nodeAgentHttp },
    };
    for (const inv of [...composeInvocations(), ...k8sInvocations(), ...systemdInvocations()]) {
      for (const [flag, port] of Object.entries(portFlags[inv.cli])) {
        const value = flagValue(inv.args, flag);
        if (value !== undefined) expect(Number(value), `${inv.source} ${flag}`).toBe(port);
      }
      const orchestrator = flagValue(inv.args, '--orchestrator');
      if (orchestrator !== undefined) expect(orchestrator, `${inv.source} --orchestrator`).toMatch(new RegExp(`:${PORTS.grpc}$`));
    }

    expect(readDeploy('docker/Dockerfile')).toMatch(
      new RegExp(`^EXPOSE ${PORTS.grpc} ${PORTS.orchestratorHttp} ${PORTS.modelServer} ${PORTS.nodeAgentHttp}$`, 'm'),
    );
  });

  it('compose: AOF Redis, published ports and health checks match the services', () => {
    const services = new Map(composeServices().map((s) => [s.name, s]));
    const redis = services.get('redis');
    const orchestrator = services.get('orchestrator');
    const modelServer = services.get('model-server');
    expect(redis?.command.join(' ')).toMatch(/--appendonly yes/);
    expect(orchestrator?.command.join(' ')).toMatch(/--redis-url redis:\/\/:\$\{CONCLAVE_REDIS_PASSWORD\}@redis:6379/);

    const containerPorts = (s: ComposeService | undefined) => (s?.ports ?? []).map((p) => Number(p.split(':').pop()));
    expect(containerPorts(orchestrator).sort()).toEqual([PORTS.grpc, PORTS.orchestratorHttp]);
    expect(containerPorts(modelServer)).toEqual([PORTS.modelServer]);
    expect(orchestrator?.healthcheck.join(' ')).toContain(`:${PORTS.orchestratorHttp}/readyz`);
    expect(modelServer?.healthcheck.join(' ')).toContain(`:${PORTS.modelServer}/health`);
  });

  it('kubernetes: container ports, Services and probes match the CLIs', () => {
    const containers = k8sContainers();
    const byWorkload = new Map(containers.map((c) => [c.workload, c]));
    const orchestrator = byWorkload.get('conclave-orchestrator');
    const modelServer = byWorkload.get('conclave-model-server');
    const redis = byWorkload.get('conclave-redis');
    expect(orchestrator?.ports).toEqual(new Map([['grpc', PORTS.grpc], ['http', PORTS.orchestratorHttp]]));
    expect(modelServer?.ports).toEqual(new Map([['http', PORTS.modelServer]]));
    expect(redis?.tokens.join(' ')).toMatch(/--appendonly yes/);

    expect(orchestrator?.probes.readiness).toEqual({ path: '/readyz', port: 'http' });
    expect(orchestrator?.probes.liveness).toEqual({ path: '/healthz', port: 'http' });
    for (const kind of ['startup', 'readiness', 'liveness']) {
      expect(modelServer?.probes[kind], `model-server ${kind}Probe`).toEqual({ path: '/health', port: 'http' });
    }

    // Every Service port reaches a named container port with the same number.
    const services = k8sObjects().filter(({ object }) => object.kind === 'Service');
    expect(services.length).toBeGreaterThanOrEqual(3);
    for (const { file, object } of services) {
      const selector = asRecord(asRecord(object.spec).selector);
      const targets = containers.filter((c) => Object.entries(selector).every(([k, v]) => c.labels[k] === v));
      expect(targets.length, `${file} Service ${String(asRecord(object.metadata).name)} selects a container`).toBeGreaterThan(0);
      for (const raw of asArray(asRecord(object.spec).ports)) {
        const port = asRecord(raw);
        const target = targets.map((c) => c.ports.get(String(port.targetPort))).find((p) => p !== undefined);
        expect(target, `${file} port ${String(port.name)}`).toBe(Number(port.port));
      }
    }

    // The operator token comes from a Secret.
    const tokenEnv = readDeploy('kubernetes/orchestrator.yaml');
    expect(tokenEnv).toMatch(/name: CONCLAVE_OPERATOR_TOKEN\n\s+valueFrom:\n\s+secretKeyRef:/);
  });

  it('sets only CONCLAVE_* variables the CLIs or docs/configuration.md know', () => {
    const known = new Set<string>();
    for (const cli of CLIS) for (const name of help(cli, ['start']).match(/CONCLAVE_[A-Z0-9_]+/g) ?? []) known.add(name);
    for (const doc of ['docs/configuration.md', 'docs/model-server.md']) {
      const path = join(ROOT, doc);
      if (existsSync(path)) for (const name of readFileSync(path, 'utf8').match(/CONCLAVE_[A-Z0-9_]+/g) ?? []) known.add(name);
    }
    const unknown: string[] = [];
    for (const service of composeServices()) {
      for (const name of Object.keys(service.environment)) {
        if (name.startsWith('CONCLAVE_') && !known.has(name)) unknown.push(`compose.yaml ${service.name}: ${name}`);
      }
    }
    for (const container of k8sContainers()) {
      const text = [...container.tokens, ...container.env.map((e) => e.value ?? '')].join(' ');
      for (const { name } of container.env) {
        if (!name.startsWith('CONCLAVE_') || known.has(name)) continue;
        // A helper only substituted into args or another variable (`$(CONCLAVE_REDIS_PASSWORD)`) is fine.
        if (!text.includes(`$(${name})`)) unknown.push(`${container.source}: ${name}`);
      }
    }
    expect(unknown).toEqual([]);
  });
});
