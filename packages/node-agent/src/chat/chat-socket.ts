import { chmod, lstat, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { ConclaveError, ensurePrivateDir, type Logger } from '@conclave/common';
import {
  chatClaimJson, chatContextJson, chatMessageJson, chatPostedJson, chatReleasedJson, chatResyncJson, chatRoomJson,
} from '@conclave/protocol';
import type { ChatClient } from './chat-client.js';
import { chatErrorJson } from './chat-error.js';
import { ChatTail, type TailSink } from './chat-tail.js';
import { LineSplitter } from './line-splitter.js';
import { malformed, parseSocketLine, type SocketRequest } from './socket-request.js';

/** The socket's file name in the data dir. */
export const CHAT_SOCKET_FILE = 'chat.sock';
/** Connections at once; one more is answered CHAT-REQ-208 and closed. */
export const CHAT_SOCKET_MAX_CONNECTIONS = 64;
/** Requests of one connection being answered at once; further lines wait unread (backpressure). */
export const CHAT_SOCKET_MAX_OUTSTANDING = 256;
/** Tails open on one connection at once; one more is answered CHAT-REQ-208. */
export const CHAT_SOCKET_MAX_TAILS = 16;
/** A longer line is answered CHAT-REQ-204 and skipped. */
export const CHAT_SOCKET_MAX_LINE_BYTES = 1024 * 1024;
/** Bytes of answers waiting for a reader before its connection stops reading requests and its tails go back to history. */
const WRITE_HIGH_WATER = 1024 * 1024;
/** AF_UNIX paths hold at most 107 bytes and a terminating zero. */
const MAX_SOCKET_PATH_BYTES = 107;

/** What the socket serves: the agent's ChatClient. */
export type BoardChat = Pick<ChatClient, 'post' | 'claim' | 'release' | 'join' | 'leave' | 'context' | 'rooms' | 'history' | 'onRoom' | 'follows'>;

export interface ChatSocketOptions {
  /** `<data-dir>/chat.sock`; its directory is made 0700. */
  path: string;
  chat: BoardChat;
  /** The agent's CHAT-prefixed logger. */
  logger: Logger;
  /** @default CHAT_SOCKET_MAX_CONNECTIONS */
  maxConnections?: number;
  /** @default CHAT_SOCKET_MAX_OUTSTANDING */
  maxOutstanding?: number;
  /** @default CHAT_SOCKET_MAX_LINE_BYTES */
  maxLineBytes?: number;
}

/**
 * The board's local chat API: a unix socket, mode 0600 in the 0700 data dir, speaking one JSON
 * object a line. Every request gets one answer with its `id` (a `tail` a stream of events); a
 * malformed line gets a CHAT-REQ-204 answer and nothing else happens: no client can crash the
 * agent or disturb another one.
 */
export class ChatSocketServer {
  private readonly connections = new Set<BoardConnection>();
  private closing = false;

  private constructor(private readonly server: Server, readonly path: string, private readonly o: ChatSocketOptions) {}

  /**
   * Listens on `path`. A socket file left by an earlier run is removed only if nothing answers on
   * it; CHAT-NET-602 when another process does, when the path is something else, or is too long.
   */
  static async start(options: ChatSocketOptions): Promise<ChatSocketServer> {
    const { path } = options;
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
      throw new ConclaveError('CHAT-NET-602', { detail: `${path}: longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket path may have` });
    }
    // The directory first: until the chmod below the socket has the umask's mode, and no other
    // user can reach it through a 0700 directory in the meantime.
    await ensurePrivateDir(dirname(path));
    await removeStaleSocket(path);
    const net = createServer();
    const server = new ChatSocketServer(net, path, options);
    net.on('connection', (socket) => server.accept(socket));
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject);
      net.listen(path, () => {
        net.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new ConclaveError('CHAT-NET-602', { detail: `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
    });
    try {
      await chmod(path, 0o600);
    } catch (err) {
      net.close();
      throw new ConclaveError('CHAT-NET-602', { detail: `${path}: chmod: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
    }
    net.on('error', (err) => options.logger.warn('NET', 'chat socket error', { path, err }));
    return server;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops accepting, ends every connection (tails stop), and removes the socket file. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of [...this.connections]) connection.destroy();
    await closed;
    await rm(this.path, { force: true }).catch(() => undefined);
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const max = this.o.maxConnections ?? CHAT_SOCKET_MAX_CONNECTIONS;
    if (this.connections.size >= max) {
      const error = chatErrorJson(new ConclaveError('CHAT-REQ-208', { detail: `${max} board socket connections open` }));
      socket.on('error', () => undefined);
      socket.end(`${JSON.stringify({ id: null, ok: false, error })}\n`);
      this.o.logger.warn('REQ', 'chat socket connection refused: too many open', { code: 'CHAT-REQ-208', connections: this.connections.size });
      return;
    }
    const connection = new BoardConnection(socket, this.o, () => this.connections.delete(connection));
    this.connections.add(connection);
  }
}

/** One client of the socket: its lines in order, at most `maxOutstanding` being answered. */
class BoardConnection {
  private readonly splitter: LineSplitter;
  /** Lines read and not yet handled; `undefined` stands for a line that was too long. */
  private lines: Array<string | undefined> = [];
  private linesHead = 0;
  private outstanding = 0;
  private readonly tails = new Set<ChatTail>();
  private out: string[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly maxOutstanding: number;

  constructor(private readonly socket: Socket, private readonly o: ChatSocketOptions, private readonly onClosed: () => void) {
    this.maxOutstanding = o.maxOutstanding ?? CHAT_SOCKET_MAX_OUTSTANDING;
    this.splitter = new LineSplitter(o.maxLineBytes ?? CHAT_SOCKET_MAX_LINE_BYTES);
    socket.on('data', (chunk: Buffer) => {
      this.splitter.push(chunk, (line) => this.lines.push(line), () => this.lines.push(undefined));
      this.handleLines();
    });
    socket.on('drain', () => this.handleLines());
    socket.on('error', (err) => this.o.logger.debug('NET', 'chat socket client error', { err }));
    socket.on('close', () => this.destroy());
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    for (const tail of this.tails) tail.stop();
    this.tails.clear();
    this.socket.destroy();
    this.onClosed();
  }

  get writable(): boolean {
    return !this.closed && this.socket.writableLength < WRITE_HIGH_WATER;
  }

  drained(): Promise<void> {
    if (this.writable || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Handles waiting lines while the answers in progress and those unread by the client allow. */
  private handleLines(): void {
    while (!this.closed && this.linesHead < this.lines.length && this.outstanding < this.maxOutstanding && this.writable) {
      const line = this.lines[this.linesHead];
      this.linesHead += 1;
      if (line === undefined) {
        this.answer(null, undefined, malformed(`line longer than ${this.o.maxLineBytes ?? CHAT_SOCKET_MAX_LINE_BYTES} bytes`));
        continue;
      }
      if (line.trim() === '') continue;
      this.handle(line);
    }
    if (this.linesHead >= this.lines.length) {
      this.lines = [];
      this.linesHead = 0;
      if (this.socket.isPaused()) this.socket.resume();
    } else if (!this.socket.isPaused()) {
      this.socket.pause();
    }
  }

  private handle(line: string): void {
    const parsed = parseSocketLine(line);
    if ('error' in parsed) {
      this.o.logger.debug('REQ', 'malformed chat socket request', { code: 'CHAT-REQ-204', reason: parsed.error.message });
      this.answer(parsed.id, undefined, parsed.error);
      return;
    }
    const { id, request } = parsed;
    if (request.op === 'tail') {
      this.tail(id, request);
      return;
    }
    this.outstanding += 1;
    this.run(request).then(
      (result) => this.answer(id, result),
      (err: unknown) => this.answer(id, undefined, err),
    ).finally(() => {
      this.outstanding -= 1;
      this.handleLines();
    });
  }

  private async run(request: Exclude<SocketRequest, { op: 'tail' }>): Promise<Record<string, unknown>> {
    const { chat } = this.o;
    switch (request.op) {
      case 'post': {
        const outcome = await chat.post({
          room: request.room, text: request.text,
          ...(request.clientMsgId !== undefined ? { clientMsgId: request.clientMsgId } : {}),
          ...(request.resource !== undefined ? { resource: request.resource } : {}),
          ...(request.fence !== undefined ? { fence: request.fence } : {}),
        });
        return outcome.queued ? { room: outcome.room, clientMsgId: outcome.clientMsgId, queued: true } : chatPostedJson(outcome.posted);
      }
      case 'claim':
        // Nested: a claim held by another member is `ok: false` inside a successful answer.
        return { claim: chatClaimJson(await chat.claim(request.room, request.resource, request.ttlMs)) };
      case 'release':
        return chatReleasedJson(await chat.release(request.room, request.resource, request.fence));
      case 'context':
        return chatContextJson(await chat.context(request.room));
      case 'join':
        return chatRoomJson(await chat.join(request.room));
      case 'leave':
        return chatRoomJson(await chat.leave(request.room));
      case 'rooms':
        return { rooms: (await chat.rooms()).map(chatRoomJson) };
    }
  }

  private tail(id: unknown, request: Extract<SocketRequest, { op: 'tail' }>): void {
    if (this.tails.size >= CHAT_SOCKET_MAX_TAILS) {
      this.answer(id, undefined, new ConclaveError('CHAT-REQ-208', { detail: `${CHAT_SOCKET_MAX_TAILS} tails open on one connection`, data: { room: request.room } }));
      return;
    }
    const sink: TailSink = {
      message: (message) => this.write({ id, event: 'message', message: chatMessageJson(message) }),
      resync: (delivery) => this.write({ id, event: 'resync', resync: chatResyncJson(delivery) }),
      writable: () => this.writable,
      drained: () => this.drained(),
    };
    const tail = new ChatTail(this.o.chat, {
      room: request.room, follow: request.follow ?? false, ...(request.from !== undefined ? { from: request.from } : {}),
    }, sink);
    this.tails.add(tail);
    tail.run().then(
      () => this.write({ id, event: 'end' }),
      (err: unknown) => this.answer(id, undefined, err),
    ).finally(() => this.tails.delete(tail));
  }

  private answer(id: unknown, result: Record<string, unknown> | undefined, err?: unknown): void {
    if (err === undefined) {
      this.write({ id, ok: true, ...result });
      return;
    }
    this.write({ id, ok: false, error: chatErrorJson(err) });
  }

  /** Answers of one tick go out in one write. */
  private write(value: Record<string, unknown>): void {
    if (this.closed) return;
    this.out.push(JSON.stringify(value));
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const text = this.out.join('\n');
      this.out = [];
      if (!this.closed && text) this.socket.write(`${text}\n`);
    });
  }
}

/** Removes `path` only if it is a socket nobody answers on: a file left by an agent that died. */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ConclaveError('CHAT-NET-602', { detail: `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
  }
  if (!stats.isSocket()) throw new ConclaveError('CHAT-NET-602', { detail: `${path} exists and is not a socket; not removed` });
  const answered = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    const timer = setTimeout(() => {
      probe.destroy();
      // Accepted and silent still means a listener: leave it alone.
      resolve(true);
    }, 1_000);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (answered) throw new ConclaveError('CHAT-NET-602', { detail: `${path}: another process is listening on it` });
  await rm(path, { force: true });
}
