import { defineErrors } from './define-errors.js';

/**
 * The Hailo backend: bundles, the sidecar, detection, the golden check and the fallback to the
 * CPU (docs/hailo.md). The sidecar (deploy/hailo-sidecar) answers with these codes too.
 */
export const HAILO_ERRORS = defineErrors({
  'NODE-LOAD-160': {
    message: 'HEF was compiled for another Hailo chip',
    recovery:
      'A HEF runs only on the chip it was compiled for (hailo8 is not hailo8l). The model runs on the CPU here; ' +
      'compile the model for this chip and add it with `--hef <chip>=FILE.hef`.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-LOAD-161': {
    message: "HEF's streams do not fit the bundle's manifest",
    recovery:
      'The message names the vstream or tensor that differs (name, element count, dtype). Fix the manifest ' +
      '(`--hailo-manifest`) or the pre/post parts; the model runs on the CPU meanwhile.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-LOAD-162': {
    message: 'HailoRT could not load the HEF',
    recovery: "HailoRT's reason is in the message (corrupt file, HailoRT version too old). The model runs on the CPU.",
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-LOAD-163': {
    message: 'model is not loaded in the Hailo sidecar',
    recovery: 'The sidecar restarted and lost its HEFs; the agent loads the HEF again before the next job.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'NODE-REQ-230': {
    message: 'malformed request to the Hailo sidecar',
    recovery: 'A frame the sidecar could not decode, or tensors that do not fit the HEF (the message says which). A bug to report.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-AUTH-590': {
    message: "Hailo sidecar socket has the wrong mode or owner",
    recovery:
      'The agent talks only to a socket of its own user with mode 0600 (no other user may reach the device or ' +
      'forge results). Fix the unit that creates it (deploy/hailo-sidecar) or remove the stale file.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'NODE-NET-630': {
    message: 'Hailo sidecar is not reachable',
    recovery: 'No socket, or nothing listens on it. The agent retries with backoff; models run on the CPU meanwhile.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-NET-631': {
    message: 'Hailo sidecar connection lost',
    recovery: 'The sidecar exited or closed the socket mid-request. The job runs on the CPU; the agent reconnects with backoff.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-NET-632': {
    message: 'malformed frame from the Hailo sidecar',
    recovery: 'An oversized or undecodable frame: the agent drops the connection and reconnects; models run on the CPU meanwhile.',
    status: 'INTERNAL',
    retryable: true,
  },
  'NODE-JOB-820': {
    message: 'Hailo inference timed out',
    recovery: 'The job runs on the CPU. Repeated timeouts open the circuit: the model runs on the CPU until a later retry of the chip succeeds.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'NODE-JOB-821': {
    message: 'Hailo device is busy',
    recovery:
      'Another process holds /dev/hailo0 (hailortcli, a second agent, a demo). Stop it; the agent retries with ' +
      'backoff and runs models on the CPU meanwhile.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-JOB-822': {
    message: 'HailoRT inference failed',
    recovery: "HailoRT's reason is in the message. The job runs on the CPU; repeated failures open the circuit.",
    status: 'INTERNAL',
    retryable: true,
  },
  'NODE-HEALTH-910': {
    message: 'golden check failed: the HEF does not match the CPU reference',
    recovery:
      "The HEF's outputs on the golden input are outside the manifest's tolerance (the message gives the largest " +
      'error). Hailo is refused for this model, which runs on the CPU; recompile or calibrate the HEF, or widen the tolerance.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-HEALTH-911': {
    message: 'model fell back from Hailo to the CPU',
    recovery:
      'The message says why (sidecar gone, repeated timeouts or errors, drift). The agent retries Hailo for the model ' +
      'with backoff; `nodes list` shows where each model runs.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-HEALTH-912': {
    message: 'PCIe link to the Hailo chip runs below Gen 3',
    recovery:
      'A Pi 5 / CM5 link runs at Gen 2 unless told otherwise, which caps a 640x640x3 model near 358 fps. Add ' +
      '`dtparam=pciex1_gen=3` to /boot/firmware/config.txt and reboot.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-HEALTH-913': {
    message: 'board is throttled or under-voltage',
    recovery: "The firmware's throttled flags are non-zero (see the message); check the power supply and cooling.",
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-STATE-730': {
    message: 'Hailo sidecar exited',
    recovery: 'The agent restarts it with backoff (its exit code and last stderr line are in the message); models run on the CPU meanwhile.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-STATE-731': {
    message: 'Hailo sidecar could not be started',
    recovery: 'Check `--hailo-sidecar-command` (or install deploy/hailo-sidecar); the node runs on the CPU.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-STATE-732': {
    message: 'no usable Hailo device on this node',
    recovery: 'With `--backend hailo` the agent does not start without one; with `--backend auto` it runs on the CPU. The message says what detection found.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-REQ-270': {
    message: 'model bundle has no CPU reference',
    recovery: 'A bundle always carries its model.onnx first: `orchestrator models add NAME FILE.onnx --hef hailo8=FILE.hef`.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-271': {
    message: 'model bundle file is not valid',
    recovery: 'The message names the file: a role other than hef/pre/post, a chip other than hailo8/hailo8l, a chip given twice, or an empty file.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-272': {
    message: 'Hailo manifest does not fit the model',
    recovery: 'The message names the field: a tensor the ONNX parts do not have, a missing vstream, a negative tolerance.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-273': {
    message: 'Hailo manifest file is not valid',
    recovery:
      'The message names the field. `--hailo-manifest` takes JSON as docs/cli.md shows it (hailortVersion, compilerVersion, tolerance, ' +
      'inputs, outputs, and optional files digests for files given on the command line). Nothing was sent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-LOAD-112': {
    message: 'bundle file does not match the sha256 in its manifest',
    recovery: 'The file is not the one the manifest was written for: rebuild the bundle or fix the manifest. Nothing was stored.',
    status: 'DATA_LOSS',
    retryable: false,
  },
});
