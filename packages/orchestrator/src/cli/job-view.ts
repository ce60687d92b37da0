import { tensorToJson, type JsonTensor } from '@conclave/protocol';
import type { Job__Output, JobState } from '@conclave/protocol';
import { formatKeyValues, formatTime, orDash } from './output-format.js';

/** A job state as the CLI prints it: `JOB_STATE_COMPLETED` → `completed`. */
export type JobStateName = 'unspecified' | 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

const STATE_NAMES: readonly JobStateName[] = ['unspecified', 'queued', 'running', 'completed', 'failed', 'cancelled'];

export function jobStateName(state: JobState): JobStateName {
  if (typeof state === 'number') return STATE_NAMES[state] ?? 'unspecified';
  const name = state.replace(/^JOB_STATE_/, '').toLowerCase();
  return (STATE_NAMES as readonly string[]).includes(name) ? (name as JobStateName) : 'unspecified';
}

export function isTerminalState(state: JobState): boolean {
  const name = jobStateName(state);
  return name === 'completed' || name === 'failed' || name === 'cancelled';
}

/** The `--json` form of a job; outputs use the JSON tensor form that `--input` accepts. */
export interface JobJson {
  id: string;
  state: JobStateName;
  kind: string;
  model: string;
  node: string;
  attempts: number;
  outputs: Record<string, JsonTensor>;
  generated: { text: string; promptTokens: number; completionTokens: number; finishReason: string } | null;
  error: { code: string; message: string; status: string; retryable: boolean } | null;
  createdAtMs: number;
  finishedAtMs: number;
  runMs: number;
}

export function jobToJson(job: Job__Output): JobJson {
  const outputs: Record<string, JsonTensor> = {};
  for (const [name, tensor] of Object.entries(job.outputs ?? {})) outputs[name] = tensorToJson(tensor);
  return {
    id: job.id,
    state: jobStateName(job.state),
    kind: job.kind,
    model: job.model,
    node: job.node,
    attempts: job.attempts,
    outputs,
    generated: job.generated
      ? {
          text: job.generated.text,
          promptTokens: job.generated.promptTokens,
          completionTokens: job.generated.completionTokens,
          finishReason: job.generated.finishReason,
        }
      : null,
    error: job.error
      ? { code: job.error.code, message: job.error.message, status: job.error.status, retryable: job.error.retryable }
      : null,
    createdAtMs: job.createdAtMs,
    finishedAtMs: job.finishedAtMs,
    runMs: job.runMs,
  };
}

/** Values shown per output tensor in human output; `--json` has them all. */
const PREVIEW_VALUES = 8;

export function formatTensorPreview(tensor: JsonTensor): string {
  const shown = tensor.data.slice(0, PREVIEW_VALUES).map((v) => (typeof v === 'number' ? formatNumber(v) : String(v)));
  const more = tensor.data.length > PREVIEW_VALUES ? `, … (${tensor.data.length} values)` : '';
  return `${tensor.dtype}[${tensor.dims.join(',')}] [${shown.join(', ')}${more}]`;
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

/** Human form: `key: value` lines, one line per output tensor. */
export function formatJob(job: JobJson): string {
  const pairs: Array<[string, string]> = [
    ['id', job.id],
    ['state', job.state],
    ['kind', orDash(job.kind)],
    ['model', orDash(job.model)],
    ['node', orDash(job.node)],
    ['attempts', String(job.attempts)],
    ['created', formatTime(job.createdAtMs)],
    ['finished', formatTime(job.finishedAtMs)],
  ];
  if (job.runMs > 0) pairs.push(['run time', `${job.runMs.toFixed(1)} ms`]);
  if (job.error) pairs.push(['error', `${job.error.code} ${job.error.message}`.trim()]);
  for (const [name, tensor] of Object.entries(job.outputs)) pairs.push([`output ${name}`, formatTensorPreview(tensor)]);
  if (job.generated) {
    pairs.push(['tokens', `${job.generated.promptTokens} prompt + ${job.generated.completionTokens} completion`]);
    pairs.push(['finish reason', orDash(job.generated.finishReason)]);
  }
  let text = formatKeyValues(pairs);
  // Generated text goes last and unindented: it may span lines.
  if (job.generated) text += `\n${job.generated.text}\n`;
  return text;
}
