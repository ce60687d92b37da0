import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The server's Prometheus metrics, in a registry of its own (several servers may share a process). */
export class ModelServerMetrics {
  readonly registry = new Registry();
  readonly timeToFirstToken = new Histogram({
    name: 'model_time_to_first_token_seconds',
    help: 'From request arrival to the first generated token (queue time included).',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly timePerOutputToken = new Histogram({
    name: 'model_time_per_output_token_seconds',
    help: 'Mean time per token after the first, per request.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers: [this.registry],
  });
  readonly queueTime = new Histogram({
    name: 'model_queue_time_seconds',
    help: 'Time a request waited for a generation slot.',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly tokensGenerated = new Counter({
    name: 'model_tokens_generated_total',
    help: 'Completion tokens generated.',
    registers: [this.registry],
  });
  readonly promptTokens = new Counter({
    name: 'model_prompt_tokens_total',
    help: 'Prompt tokens processed.',
    registers: [this.registry],
  });
  readonly requests = new Counter({
    name: 'model_requests_total',
    help: 'HTTP requests answered, by route and status.',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly cancelled = new Counter({
    name: 'model_generations_cancelled_total',
    help: 'Generations stopped before their end, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({ name: 'model_requests_in_flight', help: 'Requests generating now.', registers: [this.registry] });
  readonly waiting = new Gauge({ name: 'model_requests_waiting', help: 'Requests waiting for a slot.', registers: [this.registry] });
  readonly loadSeconds = new Gauge({
    name: 'model_load_seconds',
    help: 'Seconds the last model load took (session creation, before warm-up).',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly sessionsLoaded = new Gauge({
    name: 'model_sessions_loaded',
    help: 'onnxruntime sessions alive per model; never more than 1.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly sessionsCreated = new Counter({
    name: 'model_sessions_created_total',
    help: 'onnxruntime sessions created per model since start (a recycle adds one).',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly memoryRatio = new Gauge({
    name: 'model_memory_used_ratio',
    help: 'Memory used ÷ memory available to the process, at the last sample.',
    registers: [this.registry],
  });

  constructor() {
    // process_resident_memory_bytes, heap and event-loop lag come from here.
    collectDefaultMetrics({ register: this.registry });
  }
}
