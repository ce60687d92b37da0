import { join } from 'node:path';
import { ConclaveError, type Logger } from '@conclave/common';
import type { AcceleratorInfo, ModelArtifact__Output } from '@conclave/protocol';
import { CpuBackend } from '../cpu-backend.js';
import type { InferenceBackend } from '../inference-backend.js';
import { HailoBackend, type HailoBackendOptions } from './hailo-backend.js';
import { detectHailo, readBoardHealth } from './hailo-detection.js';
import { SidecarSupervisor } from './sidecar-supervisor.js';

/** `--backend`: `auto` takes the Hailo chip when detection finds one, `hailo` insists on it. */
export type BackendKind = 'auto' | 'cpu' | 'hailo';

/** Where systemd's unit (deploy/hailo-sidecar) puts the sidecar's socket. */
export const SYSTEMD_SIDECAR_SOCKET = '/run/conclave/hailo.sock';
/** How often the board's temperature and throttled flags are read for the heartbeats. */
const BOARD_HEALTH_INTERVAL_MS = 5_000;

export interface BackendSelectionOptions {
  kind: BackendKind;
  /** CPU worker threads: the node's slots. */
  slots: number;
  logger: Logger;
  dataDir: string;
  /** Detection reads `/dev`, `/sys` under this root (tests pass a fake tree). @default '/' */
  detectionRoot?: string;
  /** The sidecar's socket. @default `<dataDir>/hailo.sock` when the agent runs the sidecar, else SYSTEMD_SIDECAR_SOCKET */
  hailoSocket?: string;
  /** Runs the sidecar as the agent's child (`--socket PATH` is appended); absent: attach to the socket systemd's unit owns. */
  hailoSidecarCommand?: readonly string[];
  /** Extra environment for the sidecar child (tests point PYTHONPATH at the fake HailoRT). */
  hailoSidecarEnv?: Readonly<Record<string, string>>;
  fetchArtifact: (artifact: ModelArtifact__Output) => Promise<string>;
  /** Knobs of the Hailo backend (retry, recheck and timeout periods). */
  hailo?: Partial<Pick<HailoBackendOptions, 'failuresToOpen' | 'retryBaseMs' | 'retryCapMs' | 'recheckIntervalMs' | 'inferTimeoutMs'>>;
}

export interface SelectedBackend {
  readonly backend: InferenceBackend;
  /** What the node can run: "cpu", and "hailo" when it has the chip. */
  readonly backends: string[];
  /** Why this backend, for Capabilities.backend_reason and the start line. */
  readonly reason: string;
  close(): Promise<void>;
}

/**
 * Builds the node's backend: always the CPU pool, and on a board where detection finds the
 * chip (and `kind` allows it), the Hailo backend in front of it with its sidecar supervised.
 */
export async function selectBackend(o: BackendSelectionOptions): Promise<SelectedBackend> {
  const cpu = await CpuBackend.create({ workers: o.slots, logger: o.logger });
  if (o.kind === 'cpu') return { backend: cpu, backends: ['cpu'], reason: 'cpu chosen (--backend cpu)', close: () => cpu.dispose() };
  const root = o.detectionRoot ?? '/';
  const detection = await detectHailo({ root });
  if (!detection.present) {
    const reason = `hailo absent: ${detection.reason ?? 'no device'}`;
    if (o.kind === 'hailo') {
      await cpu.dispose();
      throw new ConclaveError('NODE-STATE-732', { detail: `${reason} (detection root ${root})` });
    }
    o.logger.info('STATE', 'no hailo device: models run on the cpu', { reason });
    return { backend: cpu, backends: ['cpu'], reason, close: () => cpu.dispose() };
  }
  for (const warning of detection.warnings) o.logger.failure(warning, {}, 'warn');

  const socketPath = o.hailoSocket ?? (o.hailoSidecarCommand ? join(o.dataDir, 'hailo.sock') : SYSTEMD_SIDECAR_SOCKET);
  const sidecar = new SidecarSupervisor({
    logger: o.logger, socketPath,
    ...(o.hailoSidecarCommand ? { command: [...o.hailoSidecarCommand] } : {}),
    ...(o.hailoSidecarEnv ? { env: { ...o.hailoSidecarEnv } } : {}),
  });
  const board = { temperatureC: detection.temperatureC ?? 0, throttled: detection.throttled ?? '' };
  const facts = (): Partial<AcceleratorInfo> => ({
    driverVersion: detection.driverVersion ?? '',
    pcieGen: detection.pcie?.gen ?? 0,
    pcieWidth: detection.pcie?.width ?? 0,
    temperatureC: board.temperatureC,
    throttled: board.throttled,
    warnings: detection.warnings.map((w) => `${w.code}: ${w.message}`),
  });
  const backend = new HailoBackend({ cpu, sidecar, fetchArtifact: o.fetchArtifact, logger: o.logger, detected: facts, ...o.hailo });
  // Read on a timer, not in the heartbeat: the heartbeat is built synchronously on the event loop.
  const boardTimer = setInterval(() => {
    void readBoardHealth({ root }).then((health) => {
      // Logged when the flags change to something: the since-boot bits change once, the current ones each time.
      if (health.throttled && health.throttled !== board.throttled && Number(health.throttled) !== 0) {
        o.logger.failure(new ConclaveError('NODE-HEALTH-913', { detail: `throttled=${health.throttled}` }), {}, 'warn');
      }
      board.temperatureC = health.temperatureC ?? board.temperatureC;
      board.throttled = health.throttled ?? board.throttled;
    }, () => undefined);
  }, BOARD_HEALTH_INTERVAL_MS);
  boardTimer.unref();
  sidecar.start();
  return {
    backend,
    backends: ['cpu', 'hailo'],
    reason: `hailo detected at ${detection.devicePath}`,
    async close() {
      clearInterval(boardTimer);
      await backend.dispose();
      await sidecar.stop();
    },
  };
}
