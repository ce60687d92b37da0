import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The cookie's name. */
export const SESSION_COOKIE = 'conclave_dashboard';

/** Sessions with a bad shape are refused before any MAC is computed. */
const SESSION_PATTERN = /^v1\.(\d{1,15})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

/**
 * Dashboard sessions, stateless: a cookie is `v1.<expiry ms>.<nonce>.<HMAC-SHA256>`, keyed by a
 * random per-process secret mixed with the operator token. It never holds the token; it stops
 * working at its expiry, at the orchestrator's restart and when the token changes.
 */
export class DashboardSessions {
  private readonly key: Buffer;

  constructor(
    operatorToken: string,
    readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.key = createHmac('sha256', randomBytes(32)).update(operatorToken, 'utf8').digest();
  }

  /** A new session value, valid for `ttlMs`. */
  issue(): string {
    const body = `v1.${this.now() + this.ttlMs}.${randomBytes(16).toString('base64url')}`;
    return `${body}.${this.mac(body)}`;
  }

  valid(value: string | undefined): boolean {
    const match = value === undefined ? null : SESSION_PATTERN.exec(value);
    if (!match) return false;
    const [, expires, nonce, mac] = match;
    const expected = Buffer.from(this.mac(`v1.${expires}.${nonce}`), 'utf8');
    const given = Buffer.from(mac ?? '', 'utf8');
    return given.length === expected.length && timingSafeEqual(given, expected) && Number(expires) > this.now();
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body, 'utf8').digest('base64url');
  }
}

/** The value of cookie `name` in a Cookie header, if any. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
