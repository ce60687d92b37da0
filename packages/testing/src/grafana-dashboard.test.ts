// Keeps deploy/grafana/conclave-fleet.json true to the code: it parses, its panels use the
// dashboard's datasource variable, and every metric its queries name is one the code defines.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DASHBOARD = join(ROOT, 'deploy/grafana/conclave-fleet.json');

/** prom-client's default metrics that the dashboard reads, under the prefixes our registries give them. */
const DEFAULT_METRICS = ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds'];
const DEFAULT_PREFIXES = ['conclave_orchestrator_', 'conclave_node_'];

interface Panel {
  type: string;
  id: number;
  gridPos: { x: number; w: number };
  datasource?: { uid: string };
  targets?: Array<{ expr: string; datasource: { uid: string } }>;
}

/** Every `name: '…'` a non-test source file gives a metric. */
function definedMetrics(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        for (const match of readFileSync(path, 'utf8').matchAll(/name: '(conclave_[a-z0-9_]+)'/g)) names.add(match[1] ?? '');
      }
    }
  };
  for (const pkg of readdirSync(join(ROOT, 'packages'))) walk(join(ROOT, 'packages', pkg, 'src'));
  return names;
}

describe('deploy/grafana/conclave-fleet.json', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: Panel[]; templating: { list: Array<{ name: string; type: string }> } };
  const queries = dashboard.panels.flatMap((p) => p.targets ?? []);

  it('is one dashboard whose panels all read the datasource chosen at import', () => {
    expect(dashboard.uid).toBe('conclave-fleet');
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource' }));
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      expect(panel.datasource?.uid).toBe('${datasource}');
      expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
    }
    expect(queries.length).toBeGreaterThan(15);
    for (const query of queries) expect(query.datasource.uid).toBe('${datasource}');
  });

  it('queries only metrics the code defines', () => {
    const defined = definedMetrics();
    const known = (name: string) => defined.has(name.replace(/_(bucket|sum|count)$/, ''))
      || DEFAULT_PREFIXES.some((prefix) => DEFAULT_METRICS.some((metric) => name === prefix + metric));
    const named = [...new Set(queries.flatMap((q) => [...q.expr.matchAll(/\bconclave_[a-z0-9_]+/g)].map((m) => m[0])))];
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((name) => !known(name))).toEqual([]);
  });
});
