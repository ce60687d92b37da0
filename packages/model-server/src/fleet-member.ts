import type { LogTap, Logger } from '@conclave/common';
import { startNodeAgent } from '@conclave/node-agent';
import type { NodeAgentHandle } from '@conclave/node-agent';
import type { ModelServerHandle } from './model-server.js';

/** The capability the scheduler matches `generate` jobs against. */
export const TEXT_GENERATION_FEATURE = 'text-generation';

export interface FleetMemberOptions {
  server: ModelServerHandle;
  /** Orchestrator `host:port`. */
  orchestrator: string;
  /** A join string, for the first start (later starts reconnect by key alone). */
  join?: string;
  /** The node identity and outbox live here. */
  dataDir: string;
  /** `generate` jobs at once; the server's own queue and memory guard still apply. */
  slots: number;
  /** A NODE logger: in the fleet the model server is a node like the others. */
  logger: Logger;
  /** The tap of `logger` and of the server's MODEL logger: the node agent ships both. @default none shipped */
  logTap?: LogTap;
}

/**
 * Joins the orchestrator as a node with the `text-generation` capability and nothing else, over
 * the same session as every node agent: `orchestrator jobs submit --kind generate` lands here and
 * is served by `server.generate`, through the same limits as HTTP requests. It runs no ONNX jobs:
 * no CPU inference pool is started and no backend is advertised, so the scheduler never places one here.
 */
export function joinFleet(o: FleetMemberOptions): Promise<NodeAgentHandle> {
  return startNodeAgent({
    orchestrator: o.orchestrator,
    ...(o.join ? { join: o.join } : {}),
    dataDir: o.dataDir,
    name: `model-server-${o.server.modelId}`,
    slots: o.slots,
    httpPort: -1,
    logger: o.logger,
    ...(o.logTap ? { logTap: o.logTap } : {}),
    inference: false,
    features: [TEXT_GENERATION_FEATURE],
    extraKinds: {
      generate: async (job, signal) => {
        const request = job.generate;
        const result = await o.server.generate(
          {
            prompt: request?.prompt ?? '',
            requestId: job.jobId,
            jobId: job.jobId,
            ...(request?.maxTokens ? { maxTokens: request.maxTokens } : {}),
            ...(request?.temperature ? { temperature: request.temperature } : {}),
            ...(request?.seed ? { seed: request.seed } : {}),
          },
          signal,
        );
        return {
          generated: {
            text: result.text,
            promptTokens: result.usage.prompt_tokens,
            completionTokens: result.usage.completion_tokens,
            finishReason: result.finishReason,
          },
        };
      },
    },
  });
}
