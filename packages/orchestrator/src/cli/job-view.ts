import { tensorToJson, type JsonTensor } from '@conclave/protocol';
import type { Job__Output, JobState } from '@conclave/protocol';
import { formatAge, formatKeyValues, formatTable, formatTime, orDash } from './output-format.js';

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
  /** What the job asked of its node (empty strings: any), or null when it said nothing. */
  requirements: { accelerator: string; preferAccelerator: string; capability: string } | null;
  /** Why a queued job waits when no node in the fleet can run it; empty otherwise. */
  waiting: string;
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
    requirements: job.requirements
      ? { accelerator: job.requirements.accelerator, preferAccelerator: job.requirements.preferAccelerator, capability: job.requirements.capability }
      : null,
    waiting: job.waiting ?? '',
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
  const needs = formatRequirements(job.requirements);
  if (needs) pairs.push(['requires', needs]);
  if (job.requirements?.preferAccelerator) pairs.push(['prefers', `accelerator ${job.requirements.preferAccelerator}`]);
  if (job.waiting) pairs.push(['waiting', job.waiting]);
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

/** `accelerator hailo, capability text-generation`; empty when the job asked for nothing. */
function formatRequirements(requirements: JobJson['requirements']): string {
  if (!requirements) return '';
  return [
    ...(requirements.accelerator ? [`accelerator ${requirements.accelerator}`] : []),
    ...(requirements.capability ? [`capability ${requirements.capability}`] : []),
  ].join(', ');
}

/** What the NOTE column of `jobs list` says: why a queued job waits, or a failed one's code. */
function noteOf(job: JobJson): string {
  if (job.waiting) return job.waiting;
  return job.state === 'failed' || job.state === 'cancelled' ? job.error?.code ?? '' : '';
}

/** `jobs list`: one line per job, newest first as the orchestrator sends them. */
export function formatJobTable(jobs: readonly JobJson[], now: number): string {
  return formatTable(
    [
      { header: 'id' },
      { header: 'state' },
      { header: 'kind' },
      { header: 'model' },
      { header: 'node' },
      { header: 'attempts', align: 'right' },
      { header: 'age', align: 'right' },
      { header: 'run', align: 'right' },
      { header: 'note' },
    ],
    jobs.map((j) => [
      j.id,
      j.state,
      orDash(j.kind),
      orDash(j.model),
      orDash(j.node),
      String(j.attempts),
      formatAge(j.createdAtMs, now),
      j.runMs > 0 ? `${j.runMs.toFixed(1)}ms` : '-',
      orDash(noteOf(j)),
    ]),
  );
}
