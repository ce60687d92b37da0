import { describe, expect, it } from 'vitest';
import { DashboardSessions, cookieValue } from './dashboard-session.js';

const TOKEN = 'operator-token-for-tests-0123456789';

describe('DashboardSessions', () => {
  it('issues values that it accepts until they expire, and that never hold the token', () => {
    let now = 1_000_000;
    const sessions = new DashboardSessions(TOKEN, 60_000, () => now);
    const value = sessions.issue();
    expect(value).not.toContain(TOKEN);
    expect(sessions.valid(value)).toBe(true);
    now += 59_999;
    expect(sessions.valid(value)).toBe(true);
    now += 1;
    expect(sessions.valid(value)).toBe(false);
  });

  it('refuses a changed value, another process’s value and malformed ones', () => {
    const sessions = new DashboardSessions(TOKEN, 60_000);
    const value = sessions.issue();
    const [version, expires, nonce, mac] = value.split('.');
    expect(sessions.valid(`${version}.${Number(expires) + 1}.${nonce}.${mac}`)).toBe(false);
    expect(sessions.valid(new DashboardSessions(TOKEN, 60_000).issue())).toBe(false);
    for (const bad of [undefined, '', 'v1', TOKEN, `${value}x`, value.replace('v1.', 'v2.')]) expect(sessions.valid(bad)).toBe(false);
  });
});

describe('cookieValue', () => {
  it('finds one cookie among several', () => {
    expect(cookieValue('a=1; conclave_dashboard=v1.2.3.4; b=2', 'conclave_dashboard')).toBe('v1.2.3.4');
    expect(cookieValue('xconclave_dashboard=1', 'conclave_dashboard')).toBeUndefined();
    expect(cookieValue(undefined, 'conclave_dashboard')).toBeUndefined();
  });
});
