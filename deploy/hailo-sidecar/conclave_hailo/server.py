"""The sidecar's socket server: framing, dispatch, per-model batching, timeouts, error codes.

Threads: the main thread accepts; one reader thread per connection decodes frames and answers
health at once; loads, unloads and device info run on a small pool (a HEF load takes seconds on
a board); each loaded model has one batcher thread that makes the HailoRT calls, so a slow
inference never delays another model's, or a health answer. A watchdog answers requests whose
deadline passed (NODE-JOB-820) even if HailoRT itself never returns.

Every request gets exactly one response (`Pending.answer` is idempotent); nothing a peer sends
can raise out of a reader thread.
"""

from __future__ import annotations

import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from . import device as dev
from . import wire
from .log import Logger

DEFAULT_TIMEOUT_MS = 5000
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
FRAME_HEADER = struct.Struct(">I")
# A HailoRT call gets the request's own timeout; past it by this much the watchdog answers
# NODE-JOB-820 itself, because a wedged driver may never return.
WATCHDOG_GRACE_MS = 250
WATCHDOG_PERIOD_S = 0.02
# Parts smaller than this are joined before sendmsg: one syscall buffer beats many tiny iovecs.
SMALL_PART_BYTES = 64 * 1024
# Linux's IOV_MAX is 1024.
MAX_IOVECS = 512
HOST_DTYPES = ("uint8", "float32")


class RequestError(Exception):
    """A failure to answer with a catalog code; `message` goes to the peer."""

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


def malformed(message: str) -> RequestError:
    return RequestError("NODE-REQ-230", message, False)


def _error_for_device(err: dev.DeviceError) -> RequestError:
    if isinstance(err, dev.DeviceBusyError):
        return RequestError("NODE-JOB-821", str(err), True)
    if isinstance(err, dev.HefIncompatibleError):
        return RequestError("NODE-LOAD-160", str(err), False)
    if isinstance(err, dev.VstreamNotFoundError):
        return RequestError("NODE-LOAD-161", str(err), False)
    if isinstance(err, dev.HefLoadError):
        return RequestError("NODE-LOAD-162", str(err), False)
    if isinstance(err, dev.InferTimeoutError):
        return RequestError("NODE-JOB-820", str(err), True)
    return RequestError("NODE-JOB-822", str(err), True)


@dataclass(frozen=True)
class ServerOptions:
    socket_path: str
    default_timeout_ms: int = DEFAULT_TIMEOUT_MS
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES


class Connection:
    """One agent connection: a reader thread, and writes serialized by a lock."""

    _next_id = 0

    def __init__(self, sock: socket.socket, server: "Server"):
        Connection._next_id += 1
        self.number = Connection._next_id
        self.sock = sock
        self.server = server
        self._send_lock = threading.Lock()
        self.closed = False

    def send(self, response: Dict[str, Any]) -> None:
        parts, size = wire.encode_parts("SidecarResponse", response)
        buffers = _coalesce([FRAME_HEADER.pack(size), *parts])
        with self._send_lock:
            if self.closed:
                return
            try:
                _send_all(self.sock, buffers)
            except OSError as err:
                self.server.log.log("NET", "warn", "write to agent failed; connection closed", conn=self.number, error=str(err))
                self._close_locked()

    def close(self) -> None:
        with self._send_lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _coalesce(parts: List[wire.Buffer]) -> List[memoryview]:
    out: List[memoryview] = []
    small: List[wire.Buffer] = []
    for part in parts:
        view = memoryview(part)
        if view.nbytes < SMALL_PART_BYTES:
            small.append(part)
            continue
        if small:
            out.append(memoryview(b"".join(small)))
            small = []
        out.append(view.cast("B") if view.format != "B" or view.ndim != 1 else view)
    if small:
        out.append(memoryview(b"".join(small)))
    return out


def _send_all(sock: socket.socket, buffers: List[memoryview]) -> None:
    pending = deque(buffers)
    while pending:
        batch = [pending[i] for i in range(min(len(pending), MAX_IOVECS))]
        sent = sock.sendmsg(batch)
        while sent:
            head = pending[0]
            if head.nbytes <= sent:
                sent -= head.nbytes
                pending.popleft()
            else:
                pending[0] = head[sent:]
                sent = 0


def _recv_exact(sock: socket.socket, buf: memoryview) -> bool:
    """Fills buf; False on a clean EOF before the first byte. Raises EOFError mid-buffer."""
    got = 0
    total = buf.nbytes
    while got < total:
        n = sock.recv_into(buf[got:])
        if n == 0:
            if got == 0:
                return False
            raise EOFError(f"connection closed after {got} of {total} bytes")
        got += n
    return True


@dataclass
class Pending:
    """An infer request waiting for, or in, a HailoRT call."""

    conn: Connection
    request_id: int
    model_id: str
    frames: int
    inputs: Dict[str, np.ndarray]
    deadline: float
    timeout_ms: int
    running: bool = False
    _answered: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body_name: str, body: Dict[str, Any]) -> bool:
        with self._lock:
            if self._answered:
                return False
            self._answered = True
        self.inputs = {}
        self.conn.send({"id": self.request_id, body_name: body})
        return True

    def fail(self, err: RequestError) -> bool:
        return self.answer("error", {"code": err.code, "message": err.message, "retryable": err.retryable})

    @property
    def answered(self) -> bool:
        return self._answered


class ModelSlot:
    """A loaded HEF and its batcher: concurrent requests share HailoRT calls of ≤ batch_size frames."""

    def __init__(self, server: "Server", model_id: str, loaded: dev.LoadedModel, key: Tuple[Any, ...]):
        self.server = server
        self.model_id = model_id
        self.loaded = loaded
        self.key = key
        self.inputs = {v.name: v for v in loaded.inputs}
        self.outputs = loaded.outputs
        self._queue: Deque[Pending] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"batcher-{model_id[:12]}", daemon=True)
        self._thread.start()

    def describe(self) -> Dict[str, Any]:
        def vs(v: dev.Vstream) -> Dict[str, Any]:
            return {"name": v.name, "dtype": v.dtype, "shape": list(v.shape), "qp_scale": v.qp_scale, "qp_zero_point": v.qp_zero_point}

        # hef_arch stays empty: HailoRT's Python binding does not say which chip a HEF is for.
        return {"inputs": [vs(v) for v in self.loaded.inputs], "outputs": [vs(v) for v in self.outputs]}

    def submit(self, pending: Pending) -> None:
        with self._cond:
            if self._stopped:
                raise RequestError("NODE-LOAD-163", f"model {self.model_id} was unloaded", True)
            self._queue.append(pending)
            self.server.watchdog_track(pending)
            self._cond.notify()

    def stop(self, reason: str) -> None:
        with self._cond:
            self._stopped = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for p in left:
            p.fail(RequestError("NODE-LOAD-163", reason, True))

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _take_batch(self) -> Optional[List[Pending]]:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            batch: List[Pending] = []
            frames = 0
            limit = self.loaded.batch_size
            # Whatever queued while the previous call ran goes into this one, up to batch_size
            # frames; no waiting for more (that would add latency to a lone request).
            while self._queue:
                head = self._queue[0]
                if head.answered:
                    self._queue.popleft()
                    continue
                if batch and frames + head.frames > limit:
                    break
                self._queue.popleft()
                batch.append(head)
                frames += head.frames
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                try:
                    self._execute(batch)
                except Exception as err:  # never let the batcher die: answer and go on
                    self.server.log.log("JOB", "error", "batch failed unexpectedly", model=self.model_id, error=repr(err))
                    for p in batch:
                        p.fail(RequestError("NODE-JOB-822", f"sidecar error: {err!r}", True))

    def _execute(self, batch: List[Pending]) -> None:
        now = time.monotonic()
        live: List[Pending] = []
        for p in batch:
            if p.deadline <= now:
                p.fail(RequestError("NODE-JOB-820", f"timed out after {p.timeout_ms} ms waiting for the device", True))
            else:
                live.append(p)
        if not live:
            return
        frames: List[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]] = []
        outputs_per_request: List[Dict[str, np.ndarray]] = []
        for p in live:
            p.running = True
            outs = {v.name: np.empty((p.frames, *v.shape), dtype=dev.np_dtype(v.dtype)) for v in self.outputs}
            outputs_per_request.append(outs)
            for i in range(p.frames):
                frames.append(({n: a[i] for n, a in p.inputs.items()}, {n: a[i] for n, a in outs.items()}))
        # The latest deadline bounds the call: one nearly expired request must not time out the
        # fresh ones batched with it (the watchdog answers each request at its own deadline).
        timeout_ms = max(1, int(max(p.deadline for p in live) * 1000 - now * 1000))
        total = len(frames)
        try:
            device_ms = self.loaded.run(frames, timeout_ms)
        except dev.DeviceError as err:
            failure = _error_for_device(err)
            if isinstance(err, dev.InferTimeoutError):
                failure = RequestError(failure.code, f"{failure.message} (timeout {timeout_ms} ms, {total} frames)", True)
            self.server.log.log("JOB", "warn", "hailo inference failed", code=failure.code, model=self.model_id, frames=total, message=str(err))
            for p in live:
                p.fail(failure)
            return
        answered = 0
        for p, outs in zip(live, outputs_per_request):
            tensors = [
                {"name": v.name, "dtype": v.dtype, "dims": [p.frames, *v.shape], "data": memoryview(outs[v.name]).cast("B")}
                for v in self.outputs
            ]
            if p.answer("infer", {"outputs": tensors, "device_ms": device_ms, "batched_frames": total}):
                answered += 1
        self.server.count_inferences(answered)


class Server:
    def __init__(self, options: ServerOptions, log: Logger, device: Optional[dev.Device] = None):
        self.options = options
        self.log = log
        self.device = device if device is not None else dev.Device()
        self._device_lock = threading.Lock()
        self._models: Dict[str, ModelSlot] = {}
        self._models_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sidecar-pool")
        self._connections: Dict[int, Connection] = {}
        self._conn_lock = threading.Lock()
        self._watch: List[Pending] = []
        self._watch_lock = threading.Lock()
        self._inferences = 0
        self._count_lock = threading.Lock()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._opening = False
        self._opening_lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._socket_ino: Optional[int] = None
        self._wake_r, self._wake_w = os.pipe()

    # --- lifecycle ---------------------------------------------------------------------------

    def try_open_device(self) -> Optional[dev.DeviceInfo]:
        """Opens the device if it is not; logs and returns None when HailoRT refuses."""
        try:
            return self._ensure_device()
        except RequestError as err:
            self.log.log("HEALTH", "warn", "hailo device not available", code=err.code, message=err.message)
            return None

    def _ensure_device(self) -> dev.DeviceInfo:
        with self._device_lock:
            if self.device.is_open and self.device.info is not None:
                return self.device.info
            try:
                info = self.device.open()
            except dev.DeviceError as err:
                raise _error_for_device(err) from err
            self.log.log("HEALTH", "info", "hailo device opened", arch=info.arch, serial=info.serial,
                         firmware=info.firmware_version, hailort=info.hailort_version, board=info.board_name)
            return info

    def bind(self) -> None:
        path = self.options.socket_path
        if os.path.lexists(path):
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{path} exists and is not a socket; not removing it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(0.5)
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: nothing listens on it
            else:
                raise OSError(f"another process listens on {path}")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(old_umask)
        # The umask already gave 0600; chmod in case the filesystem or a race thought otherwise.
        os.chmod(path, 0o600)
        listener.listen(16)
        self._socket_ino = os.stat(path).st_ino
        self._listener = listener
        threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()

    def request_stop(self) -> None:
        """Safe from a signal handler."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def serve(self) -> None:
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listener:
                        self._accept()
        finally:
            selector.close()
            self._shutdown()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except OSError as err:
            self.log.log("NET", "warn", "accept failed", error=str(err))
            return
        conn = Connection(sock, self)
        with self._conn_lock:
            self._connections[conn.number] = conn
        self.log.log("NET", "debug", "agent connected", conn=conn.number)
        threading.Thread(target=self._read_loop, args=(conn,), name=f"conn-{conn.number}", daemon=True).start()

    def _shutdown(self) -> None:
        self.log.log("STATE", "info", "hailo sidecar stopping", socket=self.options.socket_path)
        if self._listener is not None:
            self._listener.close()
        try:
            if self._socket_ino is not None and os.stat(self.options.socket_path).st_ino == self._socket_ino:
                os.unlink(self.options.socket_path)
        except OSError:
            pass
        with self._models_lock:
            slots = list(self._models.values())
            self._models.clear()
        for slot in slots:
            slot.stop("the sidecar is stopping")
        with self._conn_lock:
            conns = list(self._connections.values())
        for conn in conns:
            conn.close()
        for slot in slots:
            # A batcher stuck in HailoRT is a daemon thread; do not wait on it for ever.
            slot.join(1.0)
            slot.loaded.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._device_lock:
            self.device.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- reading and dispatch ----------------------------------------------------------------

    def _read_loop(self, conn: Connection) -> None:
        header = bytearray(FRAME_HEADER.size)
        header_view = memoryview(header)
        try:
            while True:
                if not _recv_exact(conn.sock, header_view):
                    break
                (length,) = FRAME_HEADER.unpack(header)
                if length > self.options.max_frame_bytes:
                    self.log.log("NET", "warn", "frame too large; connection closed", code="NODE-REQ-230",
                                 conn=conn.number, bytes=length, max=self.options.max_frame_bytes)
                    break
                frame = bytearray(length)
                if length and not _recv_exact(conn.sock, memoryview(frame)):
                    raise EOFError("connection closed inside a frame")
                self._handle_frame(conn, frame)
        except (OSError, EOFError) as err:
            if not conn.closed:
                self.log.log("NET", "debug", "connection ended", conn=conn.number, error=str(err))
        except Exception as err:  # a bug here must not take the sidecar down
            self.log.log("NET", "error", "connection failed unexpectedly", conn=conn.number, error=repr(err))
        finally:
            conn.close()
            with self._conn_lock:
                self._connections.pop(conn.number, None)
            self.log.log("NET", "debug", "agent disconnected", conn=conn.number)

    def _handle_frame(self, conn: Connection, frame: bytearray) -> None:
        try:
            request = wire.decode("SidecarRequest", frame)
        except wire.DecodeError as err:
            request_id = wire.peek_id(frame)
            self.log.log("REQ", "warn", "malformed request", code="NODE-REQ-230", conn=conn.number,
                         id=request_id, error=str(err))
            if request_id is None:
                raise EOFError("undecodable frame without an id") from err
            conn.send(_error_response(request_id, malformed(f"undecodable request: {err}")))
            return
        request_id = request.get("id", 0)
        body_name = wire.which_oneof(request, "SidecarRequest", "body")
        try:
            if body_name == "health":
                conn.send({"id": request_id, "health": self._health()})
            elif body_name == "infer":
                self._submit_infer(conn, request_id, request["infer"])
            elif body_name in ("load", "unload", "device_info"):
                self._pool.submit(self._run_pooled, conn, request_id, body_name, request[body_name])
            else:
                raise malformed("request has no body this sidecar knows")
        except RequestError as err:
            conn.send(_error_response(request_id, err))

    def _run_pooled(self, conn: Connection, request_id: int, body_name: str, body: Dict[str, Any]) -> None:
        try:
            if body_name == "load":
                result = self._load(body)
            elif body_name == "unload":
                result = self._unload(body)
            else:
                result = self._device_info()
            conn.send({"id": request_id, body_name: result})
        except RequestError as err:
            conn.send(_error_response(request_id, err))
        except Exception as err:  # answer, log, and carry on
            self.log.log("REQ", "error", "request failed unexpectedly", request=body_name, error=repr(err))
            conn.send(_error_response(request_id, RequestError("NODE-JOB-822", f"sidecar error: {err!r}", True)))

    # --- the requests ------------------------------------------------------------------------

    def _health(self) -> Dict[str, Any]:
        with self._models_lock:
            loaded = sorted(self._models)
        ok = self.device.is_open
        if not ok:
            self._open_in_background()
        with self._count_lock:
            inferences = self._inferences
        return {"ok": ok, "loaded": loaded, "inferences": inferences, "uptime_s": time.monotonic() - self._started}

    def _open_in_background(self) -> None:
        # Not the device lock: a HEF load holds that for seconds, and health must answer at once.
        with self._opening_lock:
            if self._opening:
                return
            self._opening = True

        def attempt() -> None:
            try:
                self.try_open_device()
            finally:
                with self._opening_lock:
                    self._opening = False

        self._pool.submit(attempt)

    def _device_info(self) -> Dict[str, Any]:
        info = self._ensure_device()
        return {"arch": info.arch, "serial": info.serial, "firmware_version": info.firmware_version,
                "hailort_version": info.hailort_version, "board_name": info.board_name}

    def _load(self, body: Dict[str, Any]) -> Dict[str, Any]:
        model_id = body.get("model_id", "")
        hef_path = body.get("hef_path", "")
        batch_size = body.get("batch_size", 0) or 1
        formats = dict(body.get("formats", {}))
        if not model_id:
            raise malformed("load: model_id is empty")
        if not hef_path:
            raise malformed("load: hef_path is empty")
        for name, dtype in formats.items():
            if dtype not in HOST_DTYPES:
                raise malformed(f"load: format {dtype!r} for {name!r} is not one of {', '.join(HOST_DTYPES)}")
        key = (hef_path, batch_size, tuple(sorted(formats.items())))
        self._ensure_device()
        with self._models_lock:
            existing = self._models.get(model_id)
        if existing is not None and existing.key == key:
            return existing.describe()
        if existing is not None:
            self._drop(model_id, "the model is being loaded again")
        started = time.monotonic()
        try:
            with self._device_lock:
                loaded = self.device.load(hef_path, batch_size, formats)
        except dev.DeviceError as err:
            failure = _error_for_device(err)
            self.log.log("LOAD", "warn", "hef load failed", code=failure.code, model=model_id, hef=hef_path, message=str(err))
            raise failure from err
        slot = ModelSlot(self, model_id, loaded, key)
        with self._models_lock:
            replaced = self._models.get(model_id)
            self._models[model_id] = slot
        if replaced is not None:
            replaced.stop("the model was loaded again")
            replaced.loaded.close()
        self.log.log("LOAD", "info", "hef loaded", model=model_id, hef=hef_path, batch=batch_size,
                     inputs=",".join(v.name for v in loaded.inputs), outputs=",".join(v.name for v in loaded.outputs),
                     ms=round((time.monotonic() - started) * 1000, 1))
        return slot.describe()

    def _drop(self, model_id: str, reason: str) -> bool:
        with self._models_lock:
            slot = self._models.pop(model_id, None)
        if slot is None:
            return False
        slot.stop(reason)
        # The batcher may be inside HailoRT; closing waits for it briefly, then goes on.
        slot.join(1.0)
        with self._device_lock:
            slot.loaded.close()
        return True

    def _unload(self, body: Dict[str, Any]) -> Dict[str, Any]:
        model_id = body.get("model_id", "")
        if not model_id:
            raise malformed("unload: model_id is empty")
        # Unloading a model that is not loaded is not an error: the agent's intent holds.
        if self._drop(model_id, f"model {model_id} was unloaded"):
            self.log.log("LOAD", "info", "hef unloaded", model=model_id)
        return {}

    def _submit_infer(self, conn: Connection, request_id: int, body: Dict[str, Any]) -> None:
        model_id = body.get("model_id", "")
        with self._models_lock:
            slot = self._models.get(model_id)
        if slot is None:
            raise RequestError("NODE-LOAD-163", f"model {model_id!r} is not loaded", True)
        inputs, frames = _check_inputs(slot, body.get("inputs", []))
        timeout_ms = body.get("timeout_ms", 0) or self.options.default_timeout_ms
        pending = Pending(conn, request_id, model_id, frames, inputs, time.monotonic() + timeout_ms / 1000.0, timeout_ms)
        slot.submit(pending)

    def count_inferences(self, n: int) -> None:
        with self._count_lock:
            self._inferences += n

    # --- the watchdog ------------------------------------------------------------------------

    def watchdog_track(self, pending: Pending) -> None:
        with self._watch_lock:
            self._watch.append(pending)

    def _watchdog(self) -> None:
        grace = WATCHDOG_GRACE_MS / 1000.0
        while not self._stop.wait(WATCHDOG_PERIOD_S):
            now = time.monotonic()
            with self._watch_lock:
                self._watch = [p for p in self._watch if not p.answered]
                overdue = [p for p in self._watch if now > p.deadline + (grace if p.running else 0.0)]
            for p in overdue:
                where = "in HailoRT" if p.running else "waiting for the device"
                if p.fail(RequestError("NODE-JOB-820", f"no result after {p.timeout_ms} ms ({where})", True)):
                    self.log.log("JOB", "warn", "hailo inference timed out", code="NODE-JOB-820", model=p.model_id, where=where)


def _error_response(request_id: int, err: RequestError) -> Dict[str, Any]:
    return {"id": request_id, "error": {"code": err.code, "message": err.message, "retryable": err.retryable}}


def _check_inputs(slot: ModelSlot, tensors: List[Dict[str, Any]]) -> Tuple[Dict[str, np.ndarray], int]:
    """The request's tensors as [frames, ...shape] arrays over the frame's own memory."""
    arrays: Dict[str, np.ndarray] = {}
    frames: Optional[int] = None
    for t in tensors:
        name = t.get("name", "")
        vstream = slot.inputs.get(name)
        if vstream is None:
            raise malformed(f"input {name!r} is not a vstream of the HEF (it has {', '.join(slot.inputs)})")
        if name in arrays:
            raise malformed(f"input {name!r} given twice")
        dtype = t.get("dtype", "")
        if dtype != vstream.dtype:
            raise malformed(f"input {name!r} is {dtype or 'untyped'}; the HEF's host format is {vstream.dtype}")
        dims = t.get("dims", [])
        if not dims or dims[0] < 1 or any(d < 0 for d in dims):
            raise malformed(f"input {name!r}: dims {dims} must start with a frame count of at least 1")
        per_frame = 1
        for d in dims[1:]:
            per_frame *= d
        if per_frame != vstream.frame_elements:
            raise malformed(f"input {name!r}: dims {dims} give {per_frame} elements per frame; the vstream has "
                            f"{vstream.frame_elements} ({'x'.join(map(str, vstream.shape))})")
        n = dims[0]
        if frames is not None and n != frames:
            raise malformed(f"input {name!r} has {n} frames, another input has {frames}")
        frames = n
        np_type = dev.np_dtype(dtype)
        data = t.get("data", memoryview(b""))
        want = n * per_frame * np_type.itemsize
        if data.nbytes != want:
            raise malformed(f"input {name!r}: {data.nbytes} bytes of data, dims {dims} of {dtype} need {want}")
        arr = np.frombuffer(data, dtype=np_type).reshape((n, *vstream.shape))
        if not arr.flags.aligned or not arr.flags.writeable:
            # Frames inside a protobuf frame can sit at any offset; HailoRT wants aligned, writable memory.
            arr = arr.copy()
        arrays[name] = arr
    missing = [name for name in slot.inputs if name not in arrays]
    if missing:
        raise malformed(f"missing input {', '.join(repr(m) for m in missing)}")
    assert frames is not None
    return arrays, frames
