import { describe, expect, it } from 'vitest';
import { sseEvent } from './sse-stream.js';

describe('sseEvent', () => {
  it('puts every line of the data on its own data: line', () => {
    expect(sseEvent('nodes', '<p>a</p>\n<p>b</p>')).toBe('event: nodes\ndata: <p>a</p>\ndata: <p>b</p>\n\n');
  });

  it('splits on CR and CRLF too, so that text in the data cannot start a field of its own', () => {
    expect(sseEvent('logs', 'x\revent: evil\r\ndata: y')).toBe('event: logs\ndata: x\ndata: event: evil\ndata: data: y\n\n');
  });
});
