import { ConclaveError, EXIT_FAILURE, EXIT_OK } from '@conclave/common';
import type { Job__Output, SubmitJobRequest } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { loadJobInputs, type ReadText } from './job-input.js';
import { formatJob, formatJobTable, jobStateName, jobToJson, type JobJson } from './job-view.js';
import { formatJson } from './output-format.js';

/** The most jobs one ListJobs page holds (the orchestrator's limit). */
const LIST_PAGE_MAX = 500;

export type JobKind = 'infer' | 'generate';

export interface SubmitJobOptions {
  /** @default 'infer' */
  kind?: JobKind;
  /** Required for `infer`. */
  model?: string;
  /** Inline JSON or `@file.json`; required for `infer`. */
  input?: string;
  /** Required for `generate`. */
  prompt?: string;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  /** Higher runs first. */
  priority?: number;
  /** 0 or absent: the orchestrator's default. */
  timeoutMs?: number;
  /** `cpu` or `hailo`; absent: any. */
  accelerator?: string;
  preferAccelerator?: string;
  capability?: string;
  /** Idempotency key: a second submit with the same key returns the first job. */
  clientJobId?: string;
  /** Follow the job with WatchJob until it ends. */
  wait?: boolean;
  json?: boolean;
  /** Reads `@file` inputs; tests inject it. */
  readText?: ReadText;
}

/**
 * Builds the SubmitJobRequest from the options alone, so that every mistake
 * in them (ORCH-REQ-250/251/253) is found before anything is sent.
 */
export async function buildSubmitRequest(options: SubmitJobOptions): Promise<SubmitJobRequest> {
  const kind = options.kind ?? 'infer';
  const request: SubmitJobRequest = {};
  if (kind === 'infer') {
    if (!options.model) throw usage('--model is required for an infer job');
    if (options.input === undefined) throw usage('--input is required for an infer job (JSON or @file.json)');
    if (options.prompt !== undefined) throw usage('--prompt needs --kind generate');
    request.infer = { model: options.model, inputs: await loadJobInputs(options.input, options.readText) };
  } else {
    if (options.prompt === undefined) throw usage('--prompt is required for a generate job');
    if (options.input !== undefined) throw usage('--input is for infer jobs; a generate job takes --prompt');
    request.generate = {
      prompt: options.prompt,
      ...(options.maxTokens !== undefined ? { maxTokens: options.maxTokens } : {}),
      ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
    };
  }
  if (options.accelerator !== undefined || options.capability !== undefined || options.preferAccelerator !== undefined) {
    request.requirements = {
      accelerator: options.accelerator ?? '', capability: options.capability ?? '', preferAccelerator: options.preferAccelerator ?? '',
    };
  }
  if (options.priority !== undefined) request.priority = options.priority;
  if (options.timeoutMs !== undefined) request.timeoutMs = options.timeoutMs;
  if (options.clientJobId !== undefined) request.clientJobId = options.clientJobId;
  return request;
}

function usage(detail: string): ConclaveError {
  return new ConclaveError('ORCH-REQ-253', { detail });
}

/**
 * `jobs submit`. Without `--wait` prints the job as accepted (exit 0). With
 * `--wait` prints the terminal job; exit 0 only when it completed.
 */
export async function submitJobCommand(calls: ControlCalls, io: CliIo, options: SubmitJobOptions): Promise<number> {
  const request = await buildSubmitRequest(options);
  let job = await calls.submitJob(request);
  if (options.wait) {
    const json = options.json ?? false;
    let lastState = jobStateName(job.state);
    if (!json) io.stderr.write(`job ${job.id} ${lastState}\n`);
    job = await calls.watchJob(job.id, (update) => {
      const state = jobStateName(update.state);
      if (json || state === lastState) return;
      lastState = state;
      io.stderr.write(`job ${update.id} ${state}${update.node ? ` on ${update.node}` : ''}\n`);
    });
    writeJob(io, job, json);
    return jobStateName(job.state) === 'completed' ? EXIT_OK : EXIT_FAILURE;
  }
  writeJob(io, job, options.json ?? false);
  return EXIT_OK;
}

export interface JobIdOptions {
  json?: boolean;
}

/** `jobs get ID`. */
export async function getJobCommand(calls: ControlCalls, io: CliIo, id: string, options: JobIdOptions): Promise<number> {
  writeJob(io, await calls.getJob(id), options.json ?? false);
  return EXIT_OK;
}

/** `jobs cancel ID`. */
export async function cancelJobCommand(calls: ControlCalls, io: CliIo, id: string, options: JobIdOptions): Promise<number> {
  writeJob(io, await calls.cancelJob(id), options.json ?? false);
  return EXIT_OK;
}

export interface ListJobsOptions {
  state?: string;
  model?: string;
  /** A node id or name. */
  node?: string;
  /** Jobs to print at most; pages are fetched until there are this many or no more. */
  limit: number;
  json?: boolean;
  /** Clock for the AGE column; tests pin it. */
  now?: () => number;
}

/**
 * `jobs list`: newest first, as a table or (`--json`) one job a line. A page may hold fewer jobs
 * than asked for (the orchestrator reads a bounded part of its index per call), so pages are
 * followed until `limit` jobs are in or the last page came.
 */
export async function listJobsCommand(calls: ControlCalls, io: CliIo, options: ListJobsOptions): Promise<number> {
  const jobs: JobJson[] = [];
  let pageToken = '';
  do {
    const page = await calls.listJobs({
      ...(options.state ? { state: options.state } : {}),
      ...(options.model ? { model: options.model } : {}),
      ...(options.node ? { node: options.node } : {}),
      limit: Math.min(LIST_PAGE_MAX, options.limit - jobs.length),
      ...(pageToken ? { pageToken } : {}),
    });
    jobs.push(...page.jobs.map(jobToJson));
    pageToken = page.nextPageToken;
  } while (pageToken && jobs.length < options.limit);
  if (options.json) {
    for (const job of jobs) io.stdout.write(`${JSON.stringify(job)}\n`);
  } else if (jobs.length === 0) {
    io.stdout.write(options.state || options.model || options.node ? 'no jobs match\n' : 'no jobs; submit one with `orchestrator jobs submit`\n');
  } else {
    io.stdout.write(formatJobTable(jobs, (options.now ?? Date.now)()));
  }
  if (pageToken) io.stderr.write(`${jobs.length} jobs shown (--limit ${options.limit}); there may be more\n`);
  return EXIT_OK;
}

function writeJob(io: CliIo, job: Job__Output, json: boolean): void {
  const view = jobToJson(job);
  io.stdout.write(json ? formatJson(view) : formatJob(view));
}
