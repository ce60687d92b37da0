import { Counter, Gauge, type Registry } from 'prom-client';
import type { LogDropReason, LogShipperStats } from './log-shipper.js';

const DROP_REASONS: readonly LogDropReason[] = ['spool-full', 'rate'];

/**
 * The node's log-shipping metrics, read from the shipper at each scrape (zeros without one:
 * an agent started without a tap ships nothing).
 */
export function registerLogShippingMetrics(registry: Registry, stats: () => LogShipperStats | undefined): void {
  new Counter({
    name: 'conclave_node_log_records_shipped_total',
    help: 'Log records the orchestrator acknowledged.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats()?.shippedTotal ?? 0);
    },
  });
  new Counter({
    name: 'conclave_node_log_records_dropped_total',
    help: 'Log records that will not reach the orchestrator (each said there as a gap), by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      const dropped = stats()?.droppedTotal;
      this.reset();
      for (const reason of DROP_REASONS) this.inc({ reason }, dropped?.[reason] ?? 0);
    },
  });
  new Gauge({
    name: 'conclave_node_log_spool_bytes',
    help: 'Bytes of log records kept on disk for the orchestrator.',
    registers: [registry],
    collect() {
      this.set(stats()?.spoolBytes ?? 0);
    },
  });
}
