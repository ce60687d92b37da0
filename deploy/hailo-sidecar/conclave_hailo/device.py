"""The only module that touches HailoRT (`hailo_platform`, HailoRT 4.18+ on a Hailo-8/8L).

Kept as thin as it can be: open the VDevice, identify the chip, load a HEF as an InferModel,
run a list of frames, unload. HailoRT's exceptions are turned into the few classes below (their
message is HailoRT's own words) so that server.py can map them to catalog codes without
importing HailoRT. Tests run this file unchanged against packages/testing/fake-hailort.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

import hailo_platform
from hailo_platform import FormatType, HailoRTException, HailoSchedulingAlgorithm, VDevice
from hailo_platform.pyhailort.pyhailort import (
    HailoRTHEFNotCompatibleWithDevice,
    HailoRTTimeout,
)

# HailoRT raises a plain HailoRTException for these statuses; its message names them.
_BUSY_STATUSES = ("HAILO_OUT_OF_PHYSICAL_DEVICES", "HAILO_DEVICE_IN_USE")

_FORMAT_BY_NAME = {"uint8": FormatType.UINT8, "float32": FormatType.FLOAT32}
_DTYPE_BY_FORMAT = {FormatType.UINT8: "uint8", FormatType.FLOAT32: "float32"}
if hasattr(FormatType, "UINT16"):
    _DTYPE_BY_FORMAT[FormatType.UINT16] = "uint16"


class DeviceError(Exception):
    """A HailoRT failure; `str()` is HailoRT's message with the exception's class name."""


class DeviceBusyError(DeviceError):
    """Another process holds the device (or none is free)."""


class HefIncompatibleError(DeviceError):
    """HailoRT says the HEF was compiled for another chip."""


class HefLoadError(DeviceError):
    """HailoRT could not load the HEF (missing, corrupt, unsupported)."""


class VstreamNotFoundError(DeviceError):
    """A format was asked for a vstream the HEF does not have."""


class InferTimeoutError(DeviceError):
    """The inference did not finish within its timeout."""


class InferError(DeviceError):
    """Any other failure of an inference."""


def _words(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


@dataclass(frozen=True)
class DeviceInfo:
    arch: str
    serial: str
    firmware_version: str
    hailort_version: str
    board_name: str


@dataclass(frozen=True)
class Vstream:
    name: str
    dtype: str
    shape: Tuple[int, ...]
    qp_scale: float
    qp_zero_point: float

    @property
    def frame_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


def _vstream(stream) -> Vstream:
    fmt = stream.format
    dtype = _DTYPE_BY_FORMAT.get(fmt.type, str(fmt.type))
    quant = stream.quant_infos
    # Per-channel quantization gives several; the first is what the agent can use per tensor.
    scale = float(quant[0].qp_scale) if quant else 1.0
    zero = float(quant[0].qp_zp) if quant else 0.0
    return Vstream(stream.name, dtype, tuple(int(d) for d in stream.shape), scale, zero)


class LoadedModel:
    """One HEF configured on the device; `run` is safe to call from one thread at a time."""

    def __init__(self, infer_model, configured, inputs: List[Vstream], outputs: List[Vstream], batch_size: int):
        self._infer_model = infer_model
        self._configured = configured
        self.inputs = inputs
        self.outputs = outputs
        self.batch_size = batch_size

    def run(self, frames: List[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]], timeout_ms: int) -> float:
        """Runs one HailoRT call over `frames`: per frame, its input and output arrays by vstream.

        Arrays have the vstream's per-frame shape, are C-contiguous and writable (HailoRT takes
        their memory as is); outputs are written in place. Returns the milliseconds in HailoRT.
        """
        configured = self._configured
        if configured is None:
            raise InferError("the model was unloaded")
        try:
            bindings = [configured.create_bindings(input_buffers=ins, output_buffers=outs) for ins, outs in frames]
        except HailoRTException as err:
            raise InferError(_words(err)) from err
        start = time.perf_counter()
        try:
            configured.run(bindings, max(1, int(timeout_ms)))
        except HailoRTTimeout as err:
            raise InferTimeoutError(_words(err)) from err
        except HailoRTException as err:
            raise InferError(_words(err)) from err
        return (time.perf_counter() - start) * 1000.0

    def close(self) -> None:
        configured, self._configured = self._configured, None
        self._infer_model = None
        if configured is not None:
            try:
                configured.shutdown()
            except HailoRTException:
                # Unloading must not fail: the references go either way.
                pass


class Device:
    """The VDevice and what it reports; open() may be retried after DeviceBusyError."""

    def __init__(self) -> None:
        self._vdevice = None
        self.info: Optional[DeviceInfo] = None

    @property
    def is_open(self) -> bool:
        return self._vdevice is not None

    def open(self) -> DeviceInfo:
        if self._vdevice is not None and self.info is not None:
            return self.info
        params = VDevice.create_params()
        # The async InferModel API needs HailoRT's scheduler; the binding's default is NONE.
        params.scheduling_algorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
        try:
            vdevice = VDevice(params)
        except HailoRTException as err:
            if any(status in str(err) for status in _BUSY_STATUSES):
                raise DeviceBusyError(_words(err)) from err
            raise DeviceError(_words(err)) from err
        try:
            self.info = self._identify(vdevice)
        except HailoRTException as err:
            vdevice.release()
            raise DeviceError(_words(err)) from err
        self._vdevice = vdevice
        return self.info

    @staticmethod
    def _identify(vdevice) -> DeviceInfo:
        physical = vdevice.get_physical_devices()
        if not physical:
            raise DeviceError("HailoRT: the VDevice has no physical device")
        device = physical[0]
        try:
            board = device.control.identify()
        finally:
            device.release()
        fw = board.firmware_version
        return DeviceInfo(
            arch=str(board.device_architecture),
            serial=str(board.serial_number).rstrip("\x00").strip(),
            firmware_version=f"{fw.major}.{fw.minor}.{fw.revision}",
            hailort_version=str(getattr(hailo_platform, "__version__", "")),
            board_name=str(board.board_name).rstrip("\x00").strip(),
        )

    def load(self, hef_path: str, batch_size: int, formats: Dict[str, str]) -> LoadedModel:
        if self._vdevice is None:
            raise DeviceError("device is not open")
        try:
            infer_model = self._vdevice.create_infer_model(hef_path)
            infer_model.set_batch_size(batch_size)
            names = set(infer_model.input_names) | set(infer_model.output_names)
            for name, dtype in formats.items():
                if name not in names:
                    raise VstreamNotFoundError(f"the HEF has no vstream {name!r} (it has {', '.join(sorted(names))})")
                if dtype not in _FORMAT_BY_NAME:
                    raise ValueError(f"format {dtype!r} for {name!r} is not uint8 or float32")
                stream = infer_model.input(name) if name in infer_model.input_names else infer_model.output(name)
                stream.set_format_type(_FORMAT_BY_NAME[dtype])
            inputs = [_vstream(s) for s in infer_model.inputs]
            outputs = [_vstream(s) for s in infer_model.outputs]
            configured = infer_model.configure()
        except HailoRTHEFNotCompatibleWithDevice as err:
            raise HefIncompatibleError(_words(err)) from err
        except HailoRTException as err:
            raise HefLoadError(_words(err)) from err
        return LoadedModel(infer_model, configured, inputs, outputs, batch_size)

    def close(self) -> None:
        vdevice, self._vdevice = self._vdevice, None
        if vdevice is not None:
            vdevice.release()


def np_dtype(name: str) -> np.dtype:
    return np.dtype({"uint8": np.uint8, "float32": np.float32, "uint16": np.uint16}[name])
