import { defineErrors } from './define-errors.js';

/** Node inference errors: backends, model store (owner: the node-inference engineer). */
export const NODE_INFERENCE_ERRORS = defineErrors({
  'NODE-LOAD-101': {
    message: 'onnxruntime could not load the model',
    recovery:
      "The model is not marked loaded and jobs for it fail here; onnxruntime's reason is in the message " +
      '(not an ONNX file, unsupported opset or operator, missing external data file). Re-export the model.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-LOAD-102': {
    message: 'model is not loaded on this backend',
    recovery: 'The job goes back to the scheduler, which prefers nodes that have the model loaded.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'NODE-LOAD-103': {
    message: 'model file is not in the model store',
    recovery: 'The node fetches the model from the orchestrator before it reports the model as available.',
    status: 'NOT_FOUND',
    retryable: true,
  },
  'NODE-LOAD-104': {
    message: 'model file failed verification',
    recovery: 'The file is discarded and fetched again; if it keeps failing, check the model digest the orchestrator sent.',
    status: 'DATA_LOSS',
    retryable: true,
  },
  'NODE-LOAD-105': {
    message: 'model download chunk is out of order',
    recovery: 'The download resumes from the bytes already written (the store tells the offset); no bytes are skipped.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'NODE-LOAD-106': {
    message: 'model download size does not match the declared size',
    recovery: 'The partial file is discarded and the model fetched again from the start.',
    status: 'DATA_LOSS',
    retryable: true,
  },
  'NODE-LOAD-107': {
    message: 'stored model file no longer matches its digest and was removed',
    recovery:
      'Found at startup (disk corruption or tampering); the file is deleted, the model is not offered, and ' +
      'it is fetched again when a job needs it. Check the SSD if this repeats.',
    status: 'DATA_LOSS',
    retryable: true,
  },
  'NODE-LOAD-108': {
    message: 'model digest is not a sha256 hex string',
    recovery: 'Send the 64 lowercase hex digits of the model file; the digest names the file, so nothing else is accepted.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-LOAD-109': {
    message: 'a download of this model is already in progress',
    recovery: 'Wait for the running download to finish or fail, then use the stored file.',
    status: 'ABORTED',
    retryable: true,
  },
  'NODE-LOAD-110': {
    message: 'declared model signature does not match the model file',
    recovery: 'Register the model again with the input and output names the ONNX file declares.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-REQ-201': {
    message: 'input tensors do not match the model signature',
    recovery: 'Send inputs with the names, dtypes and shapes given in the message; the job is not retried.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-JOB-811': {
    message: 'inference worker crashed',
    recovery: 'The worker is restarted; the job is retried on another node with backoff.',
    status: 'INTERNAL',
    retryable: true,
  },
  'NODE-JOB-812': {
    message: 'inference exceeded its deadline',
    recovery:
      'The job fails at once and is retried with backoff; the run itself cannot be interrupted inside onnxruntime, ' +
      'so its worker stays busy until it ends. Raise the job timeout for large models.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'NODE-JOB-813': {
    message: 'onnxruntime failed while running the model',
    recovery: "onnxruntime's reason is in the message; the inputs passed the signature check, so check the model itself.",
    status: 'INTERNAL',
    retryable: false,
  },
  'NODE-STATE-711': {
    message: 'inference backend is shut down',
    recovery: 'The agent is stopping; the job is retried on another node.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
});
