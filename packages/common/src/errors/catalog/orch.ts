import { defineErrors } from './define-errors.js';

/** Orchestrator errors (owner: the lead). */
export const ORCH_ERRORS = defineErrors({
  'ORCH-LOAD-101': {
    message: 'model file is not a valid ONNX model',
    recovery: 'Export the model again (e.g. with torch.onnx or HF optimum) and check it with onnxruntime before adding it.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-LOAD-102': {
    message: 'model upload incomplete',
    recovery: 'The upload ended before the size given in its header; nothing was recorded. Add the model again.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-LOAD-103': {
    message: 'model file missing from the orchestrator data dir',
    recovery: 'The registry names a file that is gone from <data-dir>/models; add the model again.',
    status: 'DATA_LOSS',
    retryable: false,
  },
  'ORCH-REQ-201': {
    message: 'job inputs do not match the model signature',
    recovery: 'Send every declared input with its dtype and shape; the message names the expected signature. Not retried.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-202': {
    message: 'unknown model',
    recovery: 'Add it with `orchestrator models add NAME FILE.onnx`; the message lists the models that exist.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-REQ-203': {
    message: 'malformed request',
    recovery: 'Fix the request as the message says (JSON form: {"<tensor>": {"dtype", "dims", "data"}}). Not retried.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-204': {
    message: 'job queue full',
    recovery: 'Too many jobs are waiting; retry later with backoff or add nodes.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'ORCH-REQ-205': {
    message: 'invalid model name',
    recovery: 'Use 1-128 characters from [A-Za-z0-9._-], starting with a letter or digit.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-NET-602': {
    message: 'node session ended',
    recovery: 'Jobs that were in flight on it go back to the queue with attempt+1 and backoff and run on another node; the node reconnects on its own.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-NET-603': {
    message: 'node session protocol violation',
    recovery: 'The session is closed; the node reconnects. Check that agent and orchestrator versions match.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'ORCH-NET-604': {
    message: 'gRPC port unavailable',
    recovery: 'Another process holds the gRPC port (node gateway, Control API); stop it, or pass another --grpc-port (env CONCLAVE_GRPC_PORT) or 0 for any free port.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'ORCH-HEALTH-901': {
    message: 'node missed heartbeats',
    recovery: 'Suspect after 3 missed heartbeats, dead after 5: its jobs are rescheduled on other nodes.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-JOB-801': {
    message: 'job not found',
    recovery: 'Check the job id; results are kept only until their TTL expires.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-JOB-802': {
    message: 'job timed out',
    recovery: 'The job ran past its timeout and was cancelled on its node; raise --timeout-ms or use a faster node.',
    status: 'DEADLINE_EXCEEDED',
    retryable: false,
  },
  'ORCH-JOB-803': {
    message: 'job cancelled',
    recovery: 'Cancelled by a client; nothing to do.',
    status: 'CANCELLED',
    retryable: false,
  },
  'ORCH-JOB-804': {
    message: 'job failed after its last attempt',
    recovery: 'Every attempt failed with a retryable error; the last one is in the message. Check node health and logs.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'ORCH-SCHED-851': {
    message: 'no node can run the job',
    recovery:
      'The job waits in the queue until a node with the model and accelerator joins or frees a slot; ' +
      'check `orchestrator nodes list` for capabilities and draining or suspect nodes.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-SCHED-852': {
    message: 'no such node to drain or undrain',
    recovery: 'Check the id with `orchestrator nodes list`; a node can be drained once it has registered at least once.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  // Job list, node lookup and model removal (owner: the Control API).
  'ORCH-SCHED-854': {
    message: 'no node with this id or name',
    recovery: 'Check the id or name with `orchestrator nodes list`; a node is known once it has enrolled or registered.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-SCHED-855': {
    message: 'several nodes have this name',
    recovery: 'Names are not unique; give the node id instead (the message lists the ids with that name).',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-LOAD-106': {
    message: 'model is needed by queued or running jobs',
    recovery:
      'Wait for them to end or cancel them (`orchestrator jobs list --model NAME --state queued`), or remove the model anyway ' +
      'with `models remove NAME --force`: those jobs then fail on nodes that do not hold the file yet (ORCH-LOAD-103).',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  // CLI errors (owner: the CLI): raised before anything is sent to the orchestrator.
  'ORCH-REQ-250': {
    message: 'malformed job input',
    recovery:
      'Pass --input as a JSON object {"<tensor name>": {"dtype": "float32", "dims": [1, 4], "data": [0.5, 1, 2, 3]}}, ' +
      'or @file.json holding one. Nothing was sent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-251': {
    message: 'input file unreadable',
    recovery: 'Check the path after "@" and its permissions. Nothing was sent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-252': {
    message: 'model file unreadable',
    recovery: 'Check the path of the .onnx file and its permissions. Nothing was sent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-253': {
    message: 'invalid command-line arguments',
    recovery: 'Run the command with --help for its flags. Nothing was sent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-NET-650': {
    message: 'orchestrator unreachable',
    recovery:
      'Check that `orchestrator start` is running and that --address (env CONCLAVE_ADDRESS, default 127.0.0.1:7400) ' +
      'points at its gRPC port.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  // The embedded redis-server and the connection to Redis (owner: redis launcher and connection).
  'ORCH-STATE-708': {
    message: 'embedded redis-server exited; restarting it',
    recovery:
      'Nothing to do if the next line says it started: the orchestrator restarts it on the same port and dir (AOF kept) ' +
      'and reconnects on its own. If it keeps exiting, read <data-dir>/redis/redis.log (out of memory, disk full, an AOF it cannot load).',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-STATE-709': {
    message: 'embedded redis-server cannot take its port again',
    recovery:
      'Another process took the port the embedded redis-server had (`ss -ltnp` names it). Stop that process: the orchestrator keeps ' +
      'trying and reconnects once the port is free. Nodes and clients are refused until then.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-STATE-711': {
    message: 'stopped a redis-server left running on the data dir by an earlier run',
    recovery:
      'Nothing to do: an earlier orchestrator died without stopping its embedded redis-server, which was stopped (SIGTERM, AOF flushed) ' +
      'before a new one opened the same files.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-562': {
    message: 'embedded Redis password file is readable by other users or malformed',
    recovery:
      'Run `chmod 600` on <data-dir>/redis-password, or delete it to have a new one generated at the next start ' +
      '(the embedded redis-server takes the new one; nothing else stores it).',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  // Enrollment store, admin RPCs and the operator token (owner: enrollment/admin).
  'ORCH-AUTH-550': {
    message: 'unknown node id',
    recovery: 'Check the id with `orchestrator nodes list`; a node appears there once it has enrolled with a join token.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-AUTH-551': {
    message: 'unknown join token id',
    recovery: 'Check the id with `orchestrator token list`; used and expired tokens are listed for 24 h after they expire, then forgotten.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-AUTH-552': {
    message: 'node is not in a state that allows this change',
    recovery:
      'approve takes a pending (or denied) node to accepted; deny takes a pending node to denied. ' +
      'A revoked node stays revoked: re-enroll the board with a new identity and join token. `orchestrator nodes list` shows each status.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-553': {
    message: 'operator token missing or wrong',
    recovery:
      'Control API calls need `authorization: Bearer <token>`. The CLI takes --token, then CONCLAVE_OPERATOR_TOKEN, ' +
      'then reads <data-dir>/operator-token (created by `orchestrator start`; --data-dir, default ./.conclave/orchestrator).',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-554': {
    message: 'operator token file is readable by other users',
    recovery: 'Run `chmod 600` on <data-dir>/operator-token (and check who could have read it, or delete it to get a new token); the orchestrator refuses to start until then.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-555': {
    message: 'operator token is unreadable or malformed',
    recovery:
      'The token (CONCLAVE_OPERATOR_TOKEN or <data-dir>/operator-token) must be at least 16 printable characters without spaces; ' +
      'delete the file to have a new one generated at the next start.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-556': {
    message: 'TLS file unreadable',
    recovery: 'Check the paths and permissions of --tls-cert, --tls-key or --tls-ca (PEM files). Nothing was sent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  // Orchestrator key rotation (owner: `orchestrator key`, start-up).
  'ORCH-AUTH-560': {
    message: 'key rotation file is invalid',
    recovery:
      'Each line of <data-dir>/key-rotations must be a `conclave-rotation:v1:` statement signed by the old key ' +
      '(as `orchestrator key rotate` writes it), at most 8 lines. Restore the file from backup, or delete the bad line: ' +
      'nodes still pinned only to a key it vouched for must then re-join with a new join string.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-561': {
    message: 'no orchestrator key in the data dir',
    recovery:
      '`orchestrator key` works on an existing <data-dir>/orchestrator.key (created by the first `orchestrator start`); ' +
      'pass the data dir the orchestrator runs with (--data-dir, env CONCLAVE_DATA_DIR).',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-JOB-806': {
    message: 'adopted job no longer runs on its node',
    recovery: 'After an orchestrator restart the node neither ran the job nor had its result; it is run again (nothing to do).',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-SCHED-853': {
    message: 'node claims more slots than an orchestrator allows a node',
    recovery: 'The node is given the maximum instead (--max-slots-per-node); raise it if the board really runs that many jobs at once.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: false,
  },
  'ORCH-STATE-710': {
    message: 'state store (Redis) unavailable',
    recovery: 'The orchestrator runs but cannot reach Redis; it reconnects (and restarts an embedded Redis) on its own. Retry shortly; check the orchestrator log for the Redis error. A call refused because Redis did not answer in time may still have taken effect: retry a submit with the same client_job_id, and read a cancel or revoke back.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-AUTH-570': {
    message: 'too many unauthenticated streams from this source',
    recovery: 'A source may hold only a few handshakes open at a time; the stream was refused before anything was read. Nodes retry with backoff.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'ORCH-LOAD-104': {
    message: 'too many model transfers in flight for this node',
    recovery: 'A node may fetch a few models at a time; the agent retries with backoff. A node that keeps hitting this is misbehaving: check its logs.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'ORCH-LOAD-105': {
    message: 'model transfer stalled: the node stopped reading',
    recovery: 'The transfer was abandoned and its file closed; the agent resumes from the last byte it stored when it asks again.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'ORCH-REQ-206': {
    message: 'job too large to deliver to a node',
    recovery: 'A job goes to its node in one sealed frame; send smaller inputs (the message gives the size and the limit). Not retried.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-207': {
    message: 'request value out of range',
    recovery: 'The message names the field and its allowed range; fix the request. Not retried.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-AUTH-571': {
    message: 'Control API refused: plaintext from a non-loopback address',
    recovery: 'The bearer token would cross the network in the clear. Start the orchestrator with --tls-cert/--tls-key, reach it over loopback (an SSH tunnel), or pass --insecure-control on a network you trust.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  // The fleet dashboard on the HTTP port (owner: dashboard).
  'ORCH-AUTH-572': {
    message: 'dashboard refused: operator token missing or wrong',
    recovery:
      'Log in at /dashboard with the operator token (CONCLAVE_OPERATOR_TOKEN or <data-dir>/operator-token), or send ' +
      '`Authorization: Bearer <token>`. The line names the peer: many from one stranger mean someone is guessing.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-573': {
    message: 'dashboard refused: plaintext HTTP from a non-loopback address',
    recovery:
      'The HTTP port has no TLS, so the token and the session cookie would cross the network in the clear. Only the ' +
      'connection\'s own address counts, never the Host header: open http://127.0.0.1:7401/dashboard through a tunnel that ' +
      'ends on loopback beside the orchestrator (`ssh -L 7401:127.0.0.1:7401 host`, `kubectl port-forward`), put a TLS proxy ' +
      'on the orchestrator\'s host (in its network namespace, for a container: a Docker port mapping arrives from the ' +
      'bridge, not loopback), or start the orchestrator with --insecure-control on a network you trust.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'ORCH-NET-620': {
    message: 'too many dashboard streams',
    recovery:
      'Each open dashboard tab holds one live stream and the orchestrator serves a bounded number; close tabs you do not ' +
      'watch. The refused tab retries on its own.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'ORCH-NET-621': {
    message: 'dashboard request failed',
    recovery:
      'The dashboard answered 500 (or cut the connection when the answer had begun); the line has the path and the error. ' +
      'A browser that went away mid-request is harmless; anything else is a bug: report it with the line.',
    status: 'INTERNAL',
    retryable: true,
  },
  'ORCH-NET-622': {
    message: 'dashboard stream ended: the browser stopped reading',
    recovery:
      'Its socket took no event for longer than the dashboard waits (30 s), so the stream was closed to free its slot. ' +
      'A tab that was asleep or on a dead network reconnects on its own when it wakes.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'ORCH-STATE-712': {
    message: 'job index not updated',
    recovery:
      'Redis refused or lost the index write after the job record changed; the record is right. `orchestrator jobs list` ' +
      'and conclave_jobs may show the job in its old state until the index is checked against the records of queued and ' +
      'running jobs (at a metrics scrape, at most once a minute). Check the orchestrator log for Redis errors.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
});
