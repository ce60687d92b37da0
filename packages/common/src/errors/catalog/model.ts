import { defineErrors } from './define-errors.js';

/** Text model server errors (owner: the model-server engineer). */
export const MODEL_ERRORS = defineErrors({
  'MODEL-LOAD-101': {
    message: 'model failed to load',
    recovery: 'Check the model path and that enough memory is free for the file; /health stays 503 until a load succeeds.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-LOAD-102': {
    message: 'model directory is missing a required file',
    recovery:
      'A model directory needs config.json, tokenizer.json, tokenizer_config.json and model.onnx or onnx/model.onnx ' +
      '(plus its external data); export it again with HF optimum or fix --model.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'MODEL-LOAD-103': {
    message: 'model file is not a valid ONNX model or model configuration',
    recovery: 'The file named in the message could not be parsed; re-export the model. The server does not start on it.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-LOAD-104': {
    message: 'not enough free memory to load the model',
    recovery:
      'Loading was refused before it started (file size × measured overhead exceeds free memory minus the margin); ' +
      'free memory, raise the container limit, or use a smaller model.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'MODEL-LOAD-105': {
    message: 'model signature is not a decoder the generation loop supports',
    recovery:
      'The model needs input_ids and logits, and optionally attention_mask, position_ids and past_key_values.N.key|value ' +
      'with present.N.key|value; export with `optimum-cli export onnx --task text-generation(-with-past)`.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'MODEL-LOAD-106': {
    message: 'warm-up pass failed',
    recovery: 'The model loaded but one forward pass failed; /health stays 503. Check the model export and the log for the cause.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'MODEL-LOAD-107': {
    message: 'tokenizer or chat template could not be loaded',
    recovery: 'Check tokenizer.json and the chat_template in tokenizer_config.json; the server does not start on them.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-REQ-201': {
    message: 'request queue is full',
    recovery: 'Retry later with backoff; raise the queue limit only if memory allows.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'MODEL-REQ-202': {
    message: 'request body is not valid JSON',
    recovery: 'Send a JSON object with Content-Type: application/json; the request is not retried.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-REQ-203': {
    message: 'invalid request field',
    recovery: 'Fix the field named in the message (see docs/model-server.md for the accepted fields and ranges).',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-REQ-204': {
    message: 'prompt and max_tokens exceed the model context',
    recovery: 'Shorten the prompt or lower max_tokens; the limit is in the message.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-REQ-205': {
    message: 'unknown model',
    recovery: 'Use a model id listed by GET /v1/models.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'MODEL-REQ-206': {
    message: 'unknown route',
    recovery: 'See docs/model-server.md for the routes this server answers.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'MODEL-REQ-207': {
    message: 'request body too large',
    recovery: 'Send a smaller body; the limit is in the message.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-REQ-208': {
    message: 'model is not ready',
    recovery: 'The model is loading or being recycled; retry after the Retry-After seconds. /health turns 200 when it is ready.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-REQ-209': {
    message: 'request timed out',
    recovery: 'Generation was stopped at the per-request timeout; lower max_tokens or raise the timeout.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'MODEL-REQ-210': {
    message: 'request cancelled by the client',
    recovery: 'The client disconnected; generation stopped at once. Nothing to do.',
    status: 'CANCELLED',
    retryable: false,
  },
  'MODEL-REQ-211': {
    message: 'this model has no chat template, so `messages` cannot become a prompt',
    recovery:
      'Send the text as `prompt` to /v1/completions, or give the model directory a chat template ' +
      '(`chat_template` in tokenizer_config.json, or a chat_template.jinja file).',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'MODEL-RESP-301': {
    message: 'generation failed',
    recovery: 'A forward pass failed; the request is answered with this error and the server keeps serving. Check the log.',
    status: 'INTERNAL',
    retryable: true,
  },
  'MODEL-RESP-302': {
    message: 'engine worker stopped during generation',
    recovery: 'The worker crashed or was recycled; the model is reloaded once and the request may be retried.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-MEM-401': {
    message: 'memory above the soft threshold: new requests refused',
    recovery: 'Retry after the Retry-After seconds; running requests continue. Lower concurrency or add memory if it persists.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-MEM-402': {
    message: 'request cancelled by memory emergency recovery',
    recovery: 'Memory passed the hard threshold; the newest requests were cancelled and KV caches freed. Retry later.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-MEM-403': {
    message: 'memory did not recover: engine worker recycled',
    recovery: 'The worker was terminated and the model loaded again; /health is 503 meanwhile. Check for a leak or lower limits.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-AUTH-501': {
    message: 'missing or invalid API key',
    recovery: 'Send Authorization: Bearer <key> with a key from CONCLAVE_MODEL_API_KEYS or the key file; no retry loop.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'MODEL-AUTH-502': {
    message: 'API key file could not be read',
    recovery: 'Check the path and permissions of --api-key-file (one key per line); the server does not start without it.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'MODEL-HEALTH-901': {
    message: 'model is loading',
    recovery: '/health answers 200 once the model is loaded and a warm-up pass succeeded.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-HEALTH-902': {
    message: 'model failed to load',
    recovery: 'The load error is in the log under MODEL-LOAD; fix it and restart the server.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'MODEL-HEALTH-903': {
    message: 'server is draining',
    recovery: 'The server is shutting down and takes no new requests; use another instance.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'MODEL-CLEAN-951': {
    message: 'engine worker did not stop in time',
    recovery: 'The worker was terminated; its memory is returned by the OS. Nothing to do unless it repeats.',
    status: 'INTERNAL',
    retryable: false,
  },
  'MODEL-LOAD-108': {
    message: 'model directory under --models-dir is incomplete',
    recovery:
      'The model the request named lacks the file in the message (config.json, tokenizer.json, tokenizer_config.json, ' +
      'model.onnx or onnx/model.onnx); add it: the next request for the model checks the directory again. ' +
      'Other models keep being served.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
});
