import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  ConclaveError, EXIT_CLAIM_HELD, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describeCodedFailure, describeStartupFailure, isErrorCode, lookupError,
  oneLine, parseDurationMs, type CliFailure, type TextOut,
} from '@conclave/common';
import { formatChatMessage, type ChatMessageJson } from '@conclave/protocol';
import { ChatReplyError } from '../chat/chat-error.js';
import { CHAT_SOCKET_FILE } from '../chat/chat-socket.js';
import { ChatSocketClient, type SocketAnswer } from '../chat/chat-socket-client.js';

/** `chat claim` without --ttl. */
export const DEFAULT_CLAIM_TTL = '30s';

export interface ChatCommandDeps {
  env: Record<string, string | undefined>;
  io: { stdout: TextOut; stderr: TextOut };
  /** Ends `chat tail -f`: resolves on SIGINT or SIGTERM. */
  shutdownSignal(): Promise<string>;
  setExitCode(code: number): void;
}

type Flags = Record<string, string | boolean | undefined>;

/**
 * `node-agent chat …`: each command is one request to the agent's board socket,
 * `<data-dir>/chat.sock` (no keys: the socket's 0600 mode is the access check).
 */
export function addChatCommands(program: Command, deps: ChatCommandDeps): void {
  const chat = program
    .command('chat')
    .description('Talk in the fleet\'s group chat through the running agent of --data-dir.');
  const dataDirFlag = '--data-dir <dir>';
  const dataDirHelp = 'the agent\'s data dir, whose chat.sock is used (env CONCLAVE_DATA_DIR)';
  const run = (flags: Flags, command: (client: ChatSocketClient, out: TextOut) => Promise<number>): Promise<void> =>
    runChatCommand(deps, flags, command).then(deps.setExitCode);

  chat
    .command('send <room> <text>')
    .description('Post TEXT to ROOM; queued (and sent on reconnect) while the node is offline.')
    .option(dataDirFlag, dataDirHelp)
    .option('--client-msg-id <id>', 'idempotency key: sending again with it posts once (default: a new UUID)')
    .option('--json', 'print JSON')
    .action((room: string, text: string, flags: Flags) => run(flags, async (client, out) => {
      const answer = await client.request({ op: 'post', room, text, ...(typeof flags['clientMsgId'] === 'string' ? { clientMsgId: flags['clientMsgId'] } : {}) });
      const result = resultOf(answer);
      if (flags['json']) out.write(formatJson(result));
      else if (result['queued']) {
        out.write(formatKeyValues([
          ['room', room], ['queued', 'the node is offline: sent, once, when it reconnects'], ['client msg id', String(result['clientMsgId'])],
        ]));
      } else {
        out.write(formatKeyValues([
          ['room', room],
          ['seq', `${String(result['seq'])}${result['duplicate'] ? ' (a retry: the first post with this client message id)' : ''}`],
          ['sender', String(result['sender'])],
          ['client msg id', String(result['clientMsgId'])],
        ]));
      }
      return EXIT_OK;
    }));

  chat
    .command('tail <room>')
    .description('Print ROOM\'s messages in seq order from --from SEQ (default: the start of what the log holds); -f keeps following until SIGINT or SIGTERM.')
    .option(dataDirFlag, dataDirHelp)
    .option('--from <seq>', 'first seq to print')
    .option('-f, --follow', 'keep printing new messages')
    .option('--json', 'one JSON object a line')
    .action((room: string, flags: Flags) => {
      const from = flags['from'] === undefined ? undefined : seqFlag('--from', flags['from']);
      return run(flags, async (client, out) => {
        const follow = flags['follow'] === true;
        const json = flags['json'] === true;
        const tail = client.stream({ op: 'tail', room, follow, ...(from !== undefined ? { from } : {}) }, (answer) => {
          if (answer.event === 'message') out.write(json ? `${JSON.stringify(answer['message'])}\n` : `${formatChatMessage(answer['message'] as ChatMessageJson)}\n`);
          if (answer.event === 'resync') out.write(json ? `${JSON.stringify(answer['resync'])}\n` : formatResync(answer['resync'] as Record<string, unknown>));
        });
        if (!follow) {
          await tail;
          return EXIT_OK;
        }
        // Until a signal; the agent ending the stream (it stopped) is a failure.
        const signalled = deps.shutdownSignal().then(() => 'signal' as const);
        const ended = await Promise.race([tail.then(() => 'end' as const), signalled]);
        if (ended === 'end') throw new ConclaveError('CHAT-NET-602', { detail: 'the agent ended the tail' });
        tail.catch(() => undefined);
        return EXIT_OK;
      });
    });

  chat
    .command('claim <room> <resource>')
    .description('Claim RESOURCE in ROOM, first come first served: exit 0 when won, 3 when someone else holds it.')
    .option(dataDirFlag, dataDirHelp)
    .option('--ttl <duration>', 'how long the claim holds unless released: 500ms, 30s, 2m…', DEFAULT_CLAIM_TTL)
    .option('--json', 'print JSON')
    .action((room: string, resource: string, flags: Flags) => {
      const ttlMs = durationFlag('--ttl', flags['ttl']);
      return run(flags, async (client, out) => {
        const claim = resultOf(await client.request({ op: 'claim', room, resource, ttlMs }))['claim'] as Record<string, unknown>;
        if (flags['json']) out.write(formatJson(claim));
        else if (claim['ok']) {
          out.write(formatKeyValues([
            ['claimed', `${resource} in ${room}`], ['fence', String(claim['fence'])], ['seq', String(claim['seq'])],
            ['expires', `${formatTime(claim['expiresAtMs'])} (release with --fence ${String(claim['fence'])})`],
          ]));
        } else {
          out.write(formatKeyValues([
            ['held', `${resource} in ${room} (${String(claim['code'])})`], ['holder', String(claim['holder'])], ['seq', String(claim['seq'])],
            ['expires', formatTime(claim['expiresAtMs'])],
          ]));
        }
        return claim['ok'] ? EXIT_OK : EXIT_CLAIM_HELD;
      });
    });

  chat
    .command('release <room> <resource>')
    .description('Release a claim of RESOURCE in ROOM with its fencing token.')
    .option(dataDirFlag, dataDirHelp)
    .option('--fence <n>', 'the fencing token `chat claim` printed')
    .option('--json', 'print JSON')
    .action((room: string, resource: string, flags: Flags) => {
      if (flags['fence'] === undefined) throw usage('--fence N is required (the fencing token `chat claim` printed)');
      const fence = seqFlag('--fence', flags['fence']);
      return run(flags, async (client, out) => {
        const released = resultOf(await client.request({ op: 'release', room, resource, fence }));
        out.write(flags['json'] ? formatJson(released) : formatKeyValues([
          ['released', `${resource} in ${room}`], ['fence', String(released['fence'])], ['seq', String(released['seq'])],
        ]));
        return EXIT_OK;
      });
    });

  for (const op of ['join', 'leave'] as const) {
    chat
      .command(`${op} <room>`)
      .description(op === 'join' ? 'Join ROOM: the agent follows it from now on.' : 'Leave ROOM.')
      .option(dataDirFlag, dataDirHelp)
      .option('--json', 'print JSON')
      .action((room: string, flags: Flags) => run(flags, async (client, out) => {
        const joined = resultOf(await client.request({ op, room }));
        const members = Array.isArray(joined['members']) ? joined['members'].join(',') : '';
        out.write(flags['json'] ? formatJson(joined) : formatKeyValues([
          [op === 'join' ? 'joined' : 'left', room], ['epoch', String(joined['epoch'] || '-')], ['head', String(joined['headSeq'])], ['members', members || '-'],
        ]));
        return EXIT_OK;
      }));
  }

  chat
    .command('context <room>')
    .description('Print what the orchestrator keeps of ROOM: the rolling summary and the newest messages.')
    .option(dataDirFlag, dataDirHelp)
    .option('--json', 'print JSON')
    .action((room: string, flags: Flags) => run(flags, async (client, out) => {
      const context = resultOf(await client.request({ op: 'context', room }));
      out.write(flags['json'] ? formatJson(context) : formatContext(context));
      return EXIT_OK;
    }));

  chat
    .command('rooms')
    .description('List the rooms.')
    .option(dataDirFlag, dataDirHelp)
    .option('--json', 'print JSON')
    .action((flags: Flags) => run(flags, async (client, out) => {
      const rooms = resultOf(await client.request({ op: 'rooms' }))['rooms'] as Array<Record<string, unknown>>;
      out.write(flags['json'] ? formatJson(rooms) : formatRooms(rooms));
      return EXIT_OK;
    }));
}

async function runChatCommand(
  deps: ChatCommandDeps, flags: Flags, command: (client: ChatSocketClient, out: TextOut) => Promise<number>,
): Promise<number> {
  const dataDir = typeof flags['dataDir'] === 'string' ? flags['dataDir'] : deps.env['CONCLAVE_DATA_DIR'];
  if (!dataDir) {
    const failure = describeCodedFailure(usage('--data-dir DIR (or env CONCLAVE_DATA_DIR) is required: the agent\'s data dir'));
    deps.io.stderr.write(`${failure.line}\n`);
    return failure.exitCode;
  }
  let client: ChatSocketClient | undefined;
  try {
    client = await ChatSocketClient.connect(join(resolve(dataDir), CHAT_SOCKET_FILE));
    return await command(client, deps.io.stdout);
  } catch (err) {
    const failure = describeChatFailure(err);
    deps.io.stderr.write(`${failure.line}\n`);
    return failure.exitCode;
  } finally {
    client?.close();
  }
}

/**
 * A local failure as the other commands print it; an error the agent (or through it the
 * orchestrator) answered as `<code> <message> — <recovery>`, exit 2 when it was bad input
 * (INVALID_ARGUMENT: nothing was posted or claimed), 1 otherwise.
 */
export function describeChatFailure(err: unknown): CliFailure {
  if (err instanceof ConclaveError) return describeCodedFailure(err);
  if (err instanceof ChatReplyError) {
    const entry = isErrorCode(err.code) ? lookupError(err.code) : undefined;
    return {
      line: oneLine(`${err.code} ${err.message}${entry ? ` — ${entry.recovery}` : ''}`),
      exitCode: entry?.status === 'INVALID_ARGUMENT' ? EXIT_USAGE : EXIT_FAILURE,
    };
  }
  return describeStartupFailure(err, 'NODE-STATE-707');
}

function usage(detail: string): ConclaveError {
  return new ConclaveError('NODE-STATE-705', { detail });
}

function seqFlag(flag: string, value: unknown): number {
  const text = String(value);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) throw usage(`${flag} ${JSON.stringify(text)}: expected a whole number from 1`);
  return Number(text);
}

function durationFlag(flag: string, value: unknown): number {
  const ms = parseDurationMs(String(value));
  if (ms === undefined || ms <= 0) throw usage(`${flag} ${JSON.stringify(String(value))}: expected a duration such as 500ms, 30s or 2m`);
  return ms;
}

/** The answer without its envelope (`id`, `ok`). */
function resultOf(answer: SocketAnswer): Record<string, unknown> {
  const { id: _id, ok: _ok, ...result } = answer;
  return result;
}

function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function formatTime(ms: unknown): string {
  return typeof ms === 'number' && ms > 0 ? new Date(ms).toISOString() : '-';
}

function formatResync(resync: Record<string, unknown>): string {
  const summary = typeof resync['summary'] === 'string' && resync['summary'] ? `-- summary: ${resync['summary']}\n` : '';
  return `-- resynchronised (${String(resync['reason'] || '-')}, ${String(resync['code'] || '-')}): the room's context up to #${String(resync['headSeq'])} follows\n${summary}`;
}

function formatContext(context: Record<string, unknown>): string {
  const messages = (context['messages'] as ChatMessageJson[] | undefined) ?? [];
  const head = formatKeyValues([
    ['room', String(context['room'])],
    ['epoch', String(context['epoch'] || '-')],
    ['head', String(context['headSeq'])],
    ['window', `${messages.length}/${String(context['maxMessages'])} messages, ${String(context['tokens'])}/${String(context['maxTokens'])} tokens`],
    ['summary', context['summary'] ? `through #${String(context['summaryThroughSeq'])}: ${String(context['summary'])}` : '-'],
  ]);
  return messages.length > 0 ? `${head}\n${messages.map(formatChatMessage).join('\n')}\n` : head;
}

function formatRooms(rooms: ReadonlyArray<Record<string, unknown>>): string {
  if (rooms.length === 0) return 'no chat rooms\n';
  const header = ['NAME', 'HEAD', 'FIRST', 'MEMBERS', 'CREATED BY'];
  const right = new Set([1, 2, 3]);
  const rows = rooms.map((r) => [
    String(r['name']), String(r['headSeq']), String(r['firstSeq']), String(Array.isArray(r['members']) ? r['members'].length : 0), String(r['createdBy'] || '-'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const render = (cells: string[]): string => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return `${[render(header), ...rows.map(render)].join('\n')}\n`;
}

/** `key: value` lines with the values aligned, as the orchestrator's commands print them. */
function formatKeyValues(pairs: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length + 1));
  return `${pairs.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`.trimEnd()).join('\n')}\n`;
}
