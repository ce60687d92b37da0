import os
import socket
import stat
import threading
import time
import unittest

from sidecar_harness import Sidecar, affine_hef, tensor, wait_for  # first: it checks numpy

import numpy as np  # noqa: E402

IN = "affine/input_layer1"
OUT = "affine/fc1"
W = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 1]], dtype=np.float32)
B = np.array([0.5, -1, 0], dtype=np.float32)


def outputs(response, name=OUT):
    t = next(t for t in response["infer"]["outputs"] if t["name"] == name)
    return np.frombuffer(t["data"], dtype=t["dtype"]).reshape(t["dims"])


class SidecarCase(unittest.TestCase):
    arch = "HAILO8"

    def setUp(self):
        self.sidecar = Sidecar(self.arch)
        self.client = self.sidecar.connect()

    def tearDown(self):
        self.client.close()
        self.sidecar.stop()

    def load(self, hef=None, batch_size=4, model_id="m1", **extra):
        path = self.sidecar.write_hef(f"{model_id}.hef", hef or affine_hef())
        return self.client.call("load", {"model_id": model_id, "hef_path": path, "batch_size": batch_size, **extra})

    def infer(self, x, model_id="m1", timeout_ms=0, client=None):
        return (client or self.client).send("infer", {"model_id": model_id, "timeout_ms": timeout_ms, "inputs": [tensor(IN, x)]})


class Basics(SidecarCase):
    def test_device_info_says_fake(self):
        info = self.client.call("device_info", {})["device_info"]
        self.assertEqual(info, {"arch": "HAILO8", "serial": "fake", "firmware_version": "4.23.0",
                                "hailort_version": "4.23.0+fake", "board_name": "fake"})

    def test_socket_is_0600_and_logs_are_prefixed(self):
        mode = os.stat(self.sidecar.socket_path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        self.assertTrue(wait_for(lambda: any("hailo sidecar listening" in l for l in self.sidecar.stderr)))
        self.assertTrue(all(l.startswith("NODE-") for l in self.sidecar.stderr), self.sidecar.stderr)

    def test_load_infer_unload(self):
        load = self.load(formats={IN: "float32"})["load"]
        self.assertEqual(load["inputs"], [{"name": IN, "dtype": "float32", "shape": [4], "qp_scale": 1.0}])
        self.assertEqual(load["outputs"][0]["name"], OUT)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        response = self.client.wait(self.infer(x))
        np.testing.assert_allclose(outputs(response), x @ W + B, rtol=1e-6)
        self.assertEqual(response["infer"]["batched_frames"], 3)
        self.assertGreaterEqual(response["infer"]["device_ms"], 0)
        health = self.client.call("health", {})["health"]
        self.assertEqual((health["ok"], health["loaded"], health["inferences"]), (True, ["m1"], 1))
        self.assertEqual(self.client.call("unload", {"model_id": "m1"})["unload"], {})
        gone = self.client.wait(self.infer(x))
        self.assertEqual(gone["error"]["code"], "NODE-LOAD-163")
        self.assertTrue(gone["error"]["retryable"])

    def test_uint8_output_format_is_quantized(self):
        hef = affine_hef(outputs=[{"name": OUT, "shape": [3], "qp_scale": 0.5, "qp_zp": 10}])
        self.load(hef, formats={OUT: "uint8"})
        x = np.array([[1, 2, 3, 4]], dtype=np.float32)
        got = outputs(self.client.wait(self.infer(x)))
        np.testing.assert_array_equal(got, np.clip(np.round((x @ W + B) / 0.5 + 10), 0, 255).astype(np.uint8))

    def test_scale_and_slice_scale_ops_and_quant_step(self):
        self.load({"fake_hef": 1, "arch": "hailo8", "inputs": [{"name": "img", "shape": [640, 640, 3], "dtype": "uint8"}],
                   "outputs": [{"name": "det", "shape": [6]}], "op": {"kind": "slice_scale", "count": 6, "a": 0.5}},
                  model_id="det")
        frame = (np.arange(640 * 640 * 3) % 251).astype(np.uint8).reshape(1, 640, 640, 3)
        r = self.client.call("infer", {"model_id": "det", "inputs": [tensor("img", frame)]})
        np.testing.assert_array_equal(outputs(r, "det"), frame.reshape(1, -1)[:, :6] * 0.5)
        self.load({"fake_hef": 1, "arch": "hailo8", "inputs": [{"name": "v", "shape": [2, 2]}],
                   "outputs": [{"name": "w", "shape": [2, 2]}], "op": {"kind": "scale", "a": 0.5, "b": 1},
                   "quant_step": 0.25}, model_id="sc")
        v = np.array([[[0.3, 1.0], [2.0, -4.1]]], dtype=np.float32)
        r = self.client.call("infer", {"model_id": "sc", "inputs": [tensor("v", v)]})
        np.testing.assert_allclose(outputs(r, "w"), np.round((v * 0.5 + 1) / 0.25) * 0.25)

    def test_bad_hef_and_bad_requests_have_codes(self):
        bad = self.load("this is not a HEF", model_id="bad")
        self.assertEqual(bad["error"]["code"], "NODE-LOAD-162")
        self.assertIn("Invalid HEF", bad["error"]["message"])
        missing = self.client.call("load", {"model_id": "x", "hef_path": "/nonexistent.hef"})
        self.assertEqual(missing["error"]["code"], "NODE-LOAD-162")
        self.assertEqual(self.load(formats={"nope": "uint8"})["error"]["code"], "NODE-LOAD-161")
        self.assertEqual(self.load(formats={IN: "int4"})["error"]["code"], "NODE-REQ-230")
        self.load()
        for body in (
            {"model_id": "m1", "inputs": [tensor(IN, np.zeros((1, 5), np.float32))]},      # wrong element count
            {"model_id": "m1", "inputs": [tensor(IN, np.zeros((1, 4), np.uint8))]},        # wrong dtype
            {"model_id": "m1", "inputs": [tensor("other", np.zeros((1, 4), np.float32))]},  # unknown input
            {"model_id": "m1", "inputs": []},                                               # missing input
            {"model_id": "m1", "inputs": [{"name": IN, "dtype": "float32", "dims": [2, 4], "data": b"\0" * 16}]},
        ):
            with self.subTest(body=str(body)[:80]):
                self.assertEqual(self.client.call("infer", body)["error"]["code"], "NODE-REQ-230")
        # Undecodable with a readable id: an answer. Without one: the connection closes.
        self.client.send_raw(b"\x08\x63\x22\x7f")
        self.assertEqual(self.client.wait(99)["error"]["code"], "NODE-REQ-230")
        self.client.send_raw(b"\x08\x64")  # a valid request with no body
        self.assertEqual(self.client.wait(100)["error"]["code"], "NODE-REQ-230")
        self.client.send_raw(b"\xff\xff")
        self.assertIsNone(self.client.read())
        other = self.sidecar.connect()
        self.assertTrue(other.call("health", {})["health"]["ok"])
        other.close()

    def test_oversized_frame_closes_only_that_connection(self):
        other = self.sidecar.connect()
        self.client.sock.sendall((64 * 1024 * 1024 + 1).to_bytes(4, "big"))
        self.assertIsNone(self.client.read())
        self.assertTrue(other.call("health", {})["health"]["ok"])
        self.assertTrue(wait_for(lambda: any("frame too large" in l for l in self.sidecar.stderr)))
        other.close()

    def test_sigterm_removes_the_socket(self):
        self.assertEqual(self.sidecar.stop(), 0)
        self.assertFalse(os.path.exists(self.sidecar.socket_path))


class ParentGone(unittest.TestCase):
    def test_exits_when_stdin_closes_with_exit_with_stdin(self):
        # What the agent's kill -9 looks like from here: the pipe it held closes.
        sidecar = Sidecar(args=["--exit-with-stdin"])
        try:
            sidecar.proc.stdin.close()
            self.assertEqual(sidecar.proc.wait(5), 0)
            self.assertFalse(os.path.exists(sidecar.socket_path))
        finally:
            sidecar.stop()

    def test_keeps_serving_with_stdin_closed_without_it(self):
        # Under systemd stdin is /dev/null: EOF at once, and that means nothing.
        sidecar = Sidecar()
        try:
            sidecar.proc.stdin.close()
            client = sidecar.connect()
            self.assertIn("health", client.call("health", {}))
            client.close()
            self.assertIsNone(sidecar.proc.poll())
        finally:
            sidecar.stop()


class Batching(SidecarCase):
    def test_concurrent_requests_share_hailort_calls_and_get_their_own_slices(self):
        self.load(batch_size=4)
        self.sidecar.set_faults({"slow_ms": 150})
        xs = [np.full((1, 4), i, dtype=np.float32) for i in range(9)]
        ids = [self.infer(x) for x in xs]
        responses = [self.client.wait(i) for i in ids]
        for x, r in zip(xs, responses):
            np.testing.assert_allclose(outputs(r), x @ W + B)
        calls = self.sidecar.calls()
        self.assertEqual(sum(calls), 9)
        self.assertLess(len(calls), 9)
        self.assertLessEqual(max(calls), 4)
        self.assertTrue(any(r["infer"]["batched_frames"] > 1 for r in responses))

    def test_models_do_not_wait_for_each_other_and_health_answers_during_a_slow_infer(self):
        self.load(model_id="slow")
        self.sidecar.set_faults({"slow_ms": 1500})
        slow = self.infer(np.zeros((1, 4), np.float32), model_id="slow")
        time.sleep(0.2)
        start = time.monotonic()
        health = self.client.call("health", {})
        self.assertLess(time.monotonic() - start, 0.5)
        self.assertTrue(health["health"]["ok"])
        self.assertIn("infer", self.client.wait(slow))


class Faults(SidecarCase):
    def test_timeouts(self):
        self.load()
        self.sidecar.set_faults({"hang": True})
        r = self.client.wait(self.infer(np.zeros((1, 4), np.float32), timeout_ms=200))
        self.assertEqual(r["error"]["code"], "NODE-JOB-820")
        self.assertIn("timeout", r["error"]["message"])
        self.sidecar.set_faults({"slow_ms": 1000})
        r = self.client.wait(self.infer(np.zeros((1, 4), np.float32), timeout_ms=100))
        self.assertEqual(r["error"]["code"], "NODE-JOB-820")
        self.sidecar.set_faults({})
        self.assertIn("infer", self.client.wait(self.infer(np.zeros((1, 4), np.float32))))

    def test_default_timeout_from_the_command_line(self):
        self.client.close()
        self.sidecar.stop()
        self.sidecar = Sidecar(args=["--default-timeout-ms", "150"], faults={"hang": True})
        self.client = self.sidecar.connect()
        self.load()
        start = time.monotonic()
        r = self.client.wait(self.infer(np.zeros((1, 4), np.float32)))
        self.assertEqual(r["error"]["code"], "NODE-JOB-820")
        self.assertLess(time.monotonic() - start, 1.0)

    def test_hailort_failure_and_drift(self):
        self.load()
        self.sidecar.set_faults({"fail": "HAILO_INTERNAL_FAILURE(8) from the fake"})
        r = self.client.wait(self.infer(np.zeros((1, 4), np.float32)))
        self.assertEqual(r["error"], {"code": "NODE-JOB-822", "retryable": True,
                                      "message": "HailoRTException: HAILO_INTERNAL_FAILURE(8) from the fake"})
        self.sidecar.set_faults({"drift": 0.25})
        x = np.ones((1, 4), np.float32)
        np.testing.assert_allclose(outputs(self.client.wait(self.infer(x))), x @ W + B + 0.25)

    def test_crash_kills_the_process(self):
        self.load()
        self.sidecar.set_faults({"crash": True})
        self.infer(np.zeros((1, 4), np.float32))
        self.assertIsNone(self.client.read())
        self.assertEqual(self.sidecar.proc.wait(5), 70)

    def test_device_busy_then_free(self):
        self.client.close()
        self.sidecar.stop()
        self.sidecar = Sidecar(faults={"device_busy": True})
        self.client = self.sidecar.connect()
        self.assertTrue(any("code=NODE-JOB-821" in l for l in self.sidecar.stderr) or
                        wait_for(lambda: any("code=NODE-JOB-821" in l for l in self.sidecar.stderr)))
        self.assertFalse(self.client.call("health", {})["health"].get("ok", False))
        r = self.client.call("device_info", {})
        self.assertEqual(r["error"]["code"], "NODE-JOB-821")
        self.assertIn("HAILO_OUT_OF_PHYSICAL_DEVICES", r["error"]["message"])
        self.assertEqual(self.load()["error"]["code"], "NODE-JOB-821")
        self.sidecar.set_faults({})
        self.assertEqual(self.client.call("device_info", {})["device_info"]["arch"], "HAILO8")
        self.assertIn("load", self.load())


class WrongChip(SidecarCase):
    arch = "HAILO8L"

    def test_a_hailo8_hef_on_a_hailo8l_is_refused(self):
        r = self.load(affine_hef("hailo8"))
        self.assertEqual(r["error"]["code"], "NODE-LOAD-160")
        self.assertIn("not compatible", r["error"]["message"])
        self.assertEqual(self.client.call("device_info", {})["device_info"]["arch"], "HAILO8L")
        self.assertIn("load", self.load(affine_hef("hailo8l"), model_id="ok"))


class SocketPath(unittest.TestCase):
    def test_stale_socket_is_replaced_but_a_regular_file_is_not(self):
        first = Sidecar()
        path = first.socket_path
        first.proc.kill()  # leaves the socket file behind
        first.proc.wait()
        self.assertTrue(os.path.exists(path))
        import subprocess
        import sys
        from sidecar_harness import FAKE_DIR, SCRIPT
        env = dict(os.environ, PYTHONPATH=FAKE_DIR, PYTHONDONTWRITEBYTECODE="1")
        second = subprocess.Popen([sys.executable, SCRIPT, "--socket", path], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, text=True)
        self.assertEqual(second.stdout.readline(), "READY\n")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        sock.close()
        second.terminate()
        second.communicate(timeout=5)
        regular = os.path.join(first.dir, "plain")
        open(regular, "w").close()
        third = subprocess.run([sys.executable, SCRIPT, "--socket", regular], capture_output=True, env=env, text=True, timeout=10)
        self.assertEqual(third.returncode, 2)
        self.assertIn("not a socket", third.stderr)
        self.assertTrue(os.path.isfile(regular))
        first.stop()


if __name__ == "__main__":
    unittest.main()
