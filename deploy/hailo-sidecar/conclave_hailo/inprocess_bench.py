"""`python3 -m conclave_hailo.inprocess_bench --hef PATH --frames N`: HailoRT called in process.

The baseline of `pnpm bench hailo`: the same HEF run frame by frame through device.py with no
socket, no codec and no agent, each frame taken from a bytes object as the sidecar receives it.
On a board it measures what HailoRT itself costs per frame. Prints one JSON line:
{"perFrameMs": [...], "arch": "...", "boardName": "..."}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

import numpy as np

from .device import Device, np_dtype


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="inprocess_bench")
    parser.add_argument("--hef", required=True)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--input-format", default="uint8", help="host format of every input vstream")
    parser.add_argument("--output-format", default="float32", help="host format of every output vstream")
    args = parser.parse_args(argv)

    device = Device()
    info = device.open()
    probe = device.load(args.hef, 1, {})
    formats = {v.name: args.input_format for v in probe.inputs}
    formats.update({v.name: args.output_format for v in probe.outputs})
    probe.close()
    model = device.load(args.hef, 1, formats)
    # One frame's bytes per input, in a writable buffer as the sidecar reads a request into one
    # (HailoRT then takes the memory as it is, no copy: the same for both).
    frames = {
        v.name: bytearray(np.random.default_rng(1).integers(0, 255, size=v.frame_elements, dtype=np.uint8)
        .astype(np_dtype(args.input_format)).tobytes())
        for v in model.inputs
    }
    per_frame: List[float] = []
    for i in range(args.warmup + args.frames):
        start = time.perf_counter()
        ins = {v.name: np.frombuffer(frames[v.name], dtype=np_dtype(args.input_format)).reshape(v.shape) for v in model.inputs}
        outs = {v.name: np.empty(v.shape, dtype=np_dtype(args.output_format)) for v in model.outputs}
        model.run([(ins, outs)], 5000)
        for array in outs.values():
            array.tobytes()
        if i >= args.warmup:
            per_frame.append((time.perf_counter() - start) * 1000.0)
    model.close()
    device.close()
    print(json.dumps({"perFrameMs": per_frame, "arch": info.arch, "boardName": info.board_name}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
