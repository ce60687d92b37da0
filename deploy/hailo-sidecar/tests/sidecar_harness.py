"""Starts the real sidecar process against the fake HailoRT and talks to it over its socket."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

try:
    import numpy  # noqa: F401
except ImportError as err:  # the message is the point: CI and boards install it from apt
    raise ImportError("numpy is missing: apt-get install python3-numpy") from err

HERE = os.path.dirname(os.path.abspath(__file__))
SIDECAR_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(SIDECAR_DIR))
FAKE_DIR = os.path.join(REPO, "packages", "testing", "fake-hailort")
SCRIPT = os.path.join(SIDECAR_DIR, "conclave-hailo-sidecar")

if SIDECAR_DIR not in sys.path:
    sys.path.insert(0, SIDECAR_DIR)

from conclave_hailo import wire  # noqa: E402


def affine_hef(arch: str = "hailo8", **extra: Any) -> Dict[str, Any]:
    hef = {
        "fake_hef": 1, "arch": arch,
        "inputs": [{"name": "affine/input_layer1", "shape": [4], "dtype": "float32"}],
        "outputs": [{"name": "affine/fc1", "shape": [3]}],
        "op": {"kind": "affine", "weights": [[1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 1]], "bias": [0.5, -1, 0]},
    }
    hef.update(extra)
    return hef


class Sidecar:
    def __init__(self, arch: str = "HAILO8", args: Optional[List[str]] = None, faults: Optional[Dict[str, Any]] = None):
        self.dir = tempfile.mkdtemp(prefix="hailo-sidecar-test-")
        self.socket_path = os.path.join(self.dir, "hailo.sock")
        self.faults_path = os.path.join(self.dir, "faults.json")
        self.calls_path = os.path.join(self.dir, "calls.jsonl")
        if faults:
            self.set_faults(faults)
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": FAKE_DIR, "PYTHONDONTWRITEBYTECODE": "1",
            "CONCLAVE_FAKE_HAILORT_ARCH": arch,
            "CONCLAVE_FAKE_HAILORT_FAULTS": self.faults_path,
            "CONCLAVE_FAKE_HAILORT_CALL_LOG": self.calls_path,
        })
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, "--socket", self.socket_path, "--log-level", "debug", *(args or [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        self.stderr: List[str] = []
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        line = self.proc.stdout.readline()
        if line != "READY\n":
            self.proc.kill()
            raise AssertionError(f"sidecar did not print READY (got {line!r}); stderr: {self.stderr}")

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def set_faults(self, faults: Dict[str, Any]) -> None:
        tmp = self.faults_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(faults, f)
        os.replace(tmp, self.faults_path)

    def write_hef(self, name: str, hef: Any) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(hef if isinstance(hef, str) else json.dumps(hef))
        return path

    def calls(self) -> List[int]:
        if not os.path.exists(self.calls_path):
            return []
        with open(self.calls_path) as f:
            return [json.loads(line)["frames"] for line in f if line.strip()]

    def connect(self) -> "Client":
        return Client(self.socket_path)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drainer.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                stream.close()
        return self.proc.returncode


class Client:
    """Sends requests with ids and collects responses by id (they may come out of order)."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(10)
        self._next = 0
        self._got: Dict[int, Dict[str, Any]] = {}

    def send(self, body_name: str, body: Dict[str, Any]) -> int:
        self._next += 1
        self.send_raw(wire.encode("SidecarRequest", {"id": self._next, body_name: body}))
        return self._next

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def read(self) -> Optional[Dict[str, Any]]:
        """One response, or None when the sidecar closed the connection."""
        header = self._exact(4)
        if header is None:
            return None
        (n,) = struct.unpack(">I", header)
        data = self._exact(n)
        assert data is not None
        return wire.decode("SidecarResponse", bytearray(data))

    def _exact(self, n: int) -> Optional[bytes]:
        chunks = b""
        while len(chunks) < n:
            try:
                chunk = self.sock.recv(n - len(chunks))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            chunks += chunk
        return chunks

    def wait(self, request_id: int) -> Dict[str, Any]:
        while request_id not in self._got:
            response = self.read()
            if response is None:
                raise EOFError("sidecar closed the connection")
            self._got[response.get("id", 0)] = response
        return self._got.pop(request_id)

    def call(self, body_name: str, body: Dict[str, Any]) -> Dict[str, Any]:
        return self.wait(self.send(body_name, body))

    def close(self) -> None:
        self.sock.close()


def tensor(name: str, array: Any) -> Dict[str, Any]:
    return {"name": name, "dtype": str(array.dtype), "dims": list(array.shape), "data": array.tobytes()}


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
