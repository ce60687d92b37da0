import { cpus } from 'node:os';
import { describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import { nodeAgentConfigSchema } from './cli/start-config.js';
import { NODE_AGENT_DEFAULTS, resolveNodeAgentOptions } from './node-agent-options.js';

describe('node agent options', () => {
  it('resolves every default in one place', () => {
    const resolved = resolveNodeAgentOptions({ dataDir: '/d', logger: nullLogger });
    expect(resolved).toMatchObject({
      httpPort: 7403, httpHost: '127.0.0.1', slots: Math.max(1, cpus().length), features: [], inference: true,
    });
    expect(resolveNodeAgentOptions({ dataDir: '/d', logger: nullLogger, httpPort: -1, slots: 3, inference: false })).toMatchObject({
      httpPort: -1, slots: 3, inference: false,
    });
  });

  it('gives the CLI schema the same defaults, so `node-agent start` and startNodeAgent agree', () => {
    const parsed = nodeAgentConfigSchema.parse({ dataDir: '/d' });
    expect({ httpPort: parsed.httpPort, httpHost: parsed.httpHost }).toEqual({
      httpPort: NODE_AGENT_DEFAULTS.httpPort, httpHost: NODE_AGENT_DEFAULTS.httpHost,
    });
    expect({ logShipLevel: parsed.logShipLevel, logSpoolMaxBytes: parsed.logSpoolMaxBytes }).toEqual({ logShipLevel: 'info', logSpoolMaxBytes: 67_108_864 });
    expect(resolveNodeAgentOptions({ dataDir: '/d', logger: nullLogger }).logSpoolMaxBytes).toBe(parsed.logSpoolMaxBytes);
  });
});
