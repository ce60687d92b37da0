"""A FAKE HailoRT: the subset of hailo_platform.pyhailort.pyhailort that the Conclave sidecar's
device.py uses, with the same names, call shapes and exceptions (HailoRT 4.18-4.23), and no
hardware. It never claims to be a chip: the board name and serial say "fake".

A fake HEF is a JSON file (anything else is an "invalid HEF"):

    {"fake_hef": 1, "arch": "hailo8" | "hailo8l",
     "inputs":  [{"name": "affine/input_layer1", "shape": [4], "dtype": "float32" | "uint8",
                  "qp_scale": 1.0, "qp_zp": 0.0}],
     "outputs": [{"name": "affine/fc1", "shape": [3], "dtype": "float32", "offset": 0.0}],
     "op": {"kind": "affine", "weights": [[...features x outputs...]], "bias": [...]}
         | {"kind": "scale", "a": 0.5, "b": 1}
         | {"kind": "slice_scale", "count": K, "a": 0.5},
     "quant_step": 0.01}

The op reads the frame's inputs flattened (and concatenated, in order, if there are several) as
float32 values, whatever their format: affine computes x.W + b (an ONNX MatMul+Add), scale
computes a*x + b elementwise, slice_scale the first K elements times a. Every output gets the
result plus its "offset"; "quant_step" rounds results to multiples of it (int8-like noise). An
output whose host format is uint8 is quantized with its qp_scale / qp_zp.

Environment:
  CONCLAVE_FAKE_HAILORT_ARCH    HAILO8 (default) or HAILO8L: the fake chip.
  CONCLAVE_FAKE_HAILORT_FAULTS  a JSON file re-read on every VDevice open and every run
                                (missing = no faults): {"slow_ms": N, "crash": true,
                                "device_busy": true, "drift": d, "hang": true, "fail": "words"}.
  CONCLAVE_FAKE_HAILORT_LOCK    optional file the VDevice flocks, so a second process opening
                                the same fake device gets the busy error, as on a real board.
  CONCLAVE_FAKE_HAILORT_CALL_LOG optional file: one JSON line per run() ({"frames": n, "hef": path}).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from enum import IntEnum

import numpy


class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


# The messages HailoRT's ExceptionWrapper gives these statuses.
_TIMEOUT_WORDS = "Received a timeout - hailort has failed because a timeout had occurred"
_INVALID_HEF_WORDS = "Invalid HEF. See hailort.log for more information"
_NOT_COMPATIBLE_WORDS = "HEF file is not compatible with device. See hailort.log for more information"
_INVALID_ARGUMENT_WORDS = "Invalid argument. See hailort.log for more information"
_NOT_FOUND_WORDS = "Item not found. See hailort.log for more information"


def _status_words(code, name):
    return "libhailort failed with error: {} ({})".format(code, name)


class FormatType(IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3

    def __str__(self):
        return "FormatType." + self.name


class FormatOrder(IntEnum):
    AUTO = 0
    NHWC = 1

    def __str__(self):
        return "FormatOrder." + self.name


class HailoSchedulingAlgorithm(IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class DeviceArchitectureTypes(IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2

    def __str__(self):
        return self.name


_NUMPY_BY_FORMAT = {FormatType.UINT8: numpy.uint8, FormatType.UINT16: numpy.uint16, FormatType.FLOAT32: numpy.float32}
_FORMAT_BY_DTYPE = {"uint8": FormatType.UINT8, "uint16": FormatType.UINT16, "float32": FormatType.FLOAT32}


def _faults():
    path = os.environ.get("CONCLAVE_FAKE_HAILORT_FAULTS")
    if not path:
        return {}
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        # Missing (or being rewritten by the test this instant): no faults.
        return {}
    return data if isinstance(data, dict) else {}


def _device_arch():
    name = os.environ.get("CONCLAVE_FAKE_HAILORT_ARCH", "HAILO8").upper()
    if name not in ("HAILO8", "HAILO8L"):
        raise HailoRTException(_status_words(75, "HAILO_INVALID_DEVICE_ARCHITECTURE"))
    return DeviceArchitectureTypes[name]


class HailoFirmwareVersion(object):
    def __init__(self, major, minor, revision):
        self.major = major
        self.minor = minor
        self.revision = revision

    def __str__(self):
        return "{}.{}.{} (release,app)".format(self.major, self.minor, self.revision)


class BoardInformation(object):
    def __init__(self, device_architecture):
        self.protocol_version = 2
        self.firmware_version = HailoFirmwareVersion(4, 23, 0)
        self.logger_version = 0
        self.board_name = "fake"
        self.is_release = True
        self.device_architecture = device_architecture
        self.serial_number = "fake"
        self.part_number = "fake"
        self.product_name = "fake HailoRT (no hardware)"


class Control(object):
    def __init__(self, arch):
        self._arch = arch

    def identify(self):
        return BoardInformation(self._arch)


class Device(object):
    def __init__(self, device_id=None, _arch=None):
        self._device_id = device_id or "fake:0"
        self._control = Control(_arch if _arch is not None else _device_arch())

    @property
    def device_id(self):
        return self._device_id

    @property
    def control(self):
        return self._control

    def release(self):
        pass


class QuantInfo(object):
    def __init__(self, qp_zp, qp_scale):
        self.qp_zp = qp_zp
        self.qp_scale = qp_scale
        self.limvals_min = 0.0
        self.limvals_max = 255.0


class HailoFormat(object):
    def __init__(self, type_, order=FormatOrder.AUTO):
        self.type = type_
        self.order = order
        self.flags = 0


class _StreamSpec(object):
    def __init__(self, raw, where):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise ValueError(where + ": needs a name")
        shape = raw.get("shape")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(where + ": shape must be a list of positive integers")
        dtype = raw.get("dtype", "float32")
        if dtype not in _FORMAT_BY_DTYPE:
            raise ValueError(where + ": dtype must be uint8, uint16 or float32")
        self.name = raw["name"]
        self.shape = tuple(shape)
        self.elements = int(numpy.prod(shape))
        self.native = _FORMAT_BY_DTYPE[dtype]
        self.qp_scale = float(raw.get("qp_scale", 1.0))
        self.qp_zp = float(raw.get("qp_zp", 0.0))
        self.offset = float(raw.get("offset", 0.0))


class _FakeHef(object):
    def __init__(self, path):
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            raise HailoRTException(_status_words(13, "HAILO_OPEN_FILE_FAILURE"))
        try:
            doc = json.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("fake_hef") != 1:
                raise ValueError("not a fake HEF")
            if doc.get("arch") not in ("hailo8", "hailo8l"):
                raise ValueError("arch must be hailo8 or hailo8l")
            self.arch = doc["arch"]
            self.inputs = [_StreamSpec(s, "inputs") for s in doc.get("inputs") or []]
            self.outputs = [_StreamSpec(s, "outputs") for s in doc.get("outputs") or []]
            if not self.inputs or not self.outputs:
                raise ValueError("needs inputs and outputs")
            self.op = doc.get("op") or {}
            self.quant_step = float(doc.get("quant_step", 0) or 0)
            self._prepare_op()
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise HailoRTInvalidHEFException(_INVALID_HEF_WORDS)

    def _prepare_op(self):
        kind = self.op.get("kind")
        n_in = sum(s.elements for s in self.inputs)
        if kind == "affine":
            self.weights = numpy.asarray(self.op["weights"], dtype=numpy.float32)
            self.bias = numpy.asarray(self.op.get("bias", 0), dtype=numpy.float32)
            if self.weights.ndim != 2 or self.weights.shape[0] != n_in:
                raise ValueError("affine weights must be features x outputs")
            n_out = self.weights.shape[1]
            if self.bias.ndim == 1 and self.bias.shape[0] != n_out:
                raise ValueError("affine bias must have one value per output")
        elif kind == "scale":
            n_out = n_in
        elif kind == "slice_scale":
            n_out = int(self.op["count"])
            if not 0 < n_out <= n_in:
                raise ValueError("slice_scale count must be within the input")
        else:
            raise ValueError("unknown op kind")
        for out in self.outputs:
            if out.elements != n_out:
                raise ValueError("output element count does not fit the op")

    def compute(self, flat, drift):
        kind = self.op["kind"]
        if kind == "affine":
            y = flat @ self.weights + self.bias
        elif kind == "scale":
            y = flat * numpy.float32(self.op.get("a", 1)) + numpy.float32(self.op.get("b", 0))
        else:
            y = flat[: int(self.op["count"])] * numpy.float32(self.op.get("a", 1))
        y = y.astype(numpy.float32, copy=False)
        if self.quant_step > 0:
            y = numpy.round(y / self.quant_step) * numpy.float32(self.quant_step)
        if drift:
            y = y + numpy.float32(drift)
        return y


class VDevice(object):
    """The fake chip: opening it reads the faults (device_busy) and, if set, flocks the lock file."""

    def __init__(self, params=None, *, device_ids=None):
        self._vdevice = None
        self._params = params if params is not None else VDevice.create_params()
        self._creation_pid = os.getpid()
        self._lock_file = None
        if _faults().get("device_busy"):
            raise HailoRTException(_status_words(74, "HAILO_OUT_OF_PHYSICAL_DEVICES"))
        self._arch = _device_arch()
        lock_path = os.environ.get("CONCLAVE_FAKE_HAILORT_LOCK")
        if lock_path:
            lock_file = open(lock_path, "a+")
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock_file.close()
                raise HailoRTException(_status_words(74, "HAILO_OUT_OF_PHYSICAL_DEVICES"))
            self._lock_file = lock_file
        self._vdevice = object()

    @staticmethod
    def create_params():
        return VDeviceParams()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.release()
        return False

    def __del__(self):
        self.release()

    def release(self):
        self._vdevice = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _check_open(self):
        if self._vdevice is None:
            raise HailoRTException(_status_words(6, "HAILO_INVALID_OPERATION"))

    def get_physical_devices_ids(self):
        self._check_open()
        return ["fake:0"]

    def get_physical_devices(self):
        return [Device(dev_id, self._arch) for dev_id in self.get_physical_devices_ids()]

    def create_infer_model(self, hef_source, name=""):
        if os.getpid() != self._creation_pid:
            raise HailoRTException("InferModel can be created only from the process VDevice was created in.")
        self._check_open()
        if not isinstance(hef_source, str):
            raise HailoRTInvalidHEFException(_INVALID_HEF_WORDS)
        return InferModel(_FakeHef(hef_source), hef_source, self)


class VDeviceParams(object):
    def __init__(self):
        self.device_count = 1
        self.scheduling_algorithm = HailoSchedulingAlgorithm.NONE
        self.group_id = "UNIQUE"
        self.multi_process_service = False


class InferModel(object):
    class InferStream(object):
        def __init__(self, spec):
            self._spec = spec
            self._format = HailoFormat(spec.native)

        @property
        def name(self):
            return self._spec.name

        @property
        def shape(self):
            return self._spec.shape

        @property
        def format(self):
            return self._format

        def set_format_type(self, type):
            if type not in _NUMPY_BY_FORMAT and type != FormatType.AUTO:
                raise HailoRTInvalidArgumentException(_INVALID_ARGUMENT_WORDS)
            self._format = HailoFormat(self._spec.native if type == FormatType.AUTO else FormatType(type))

        def set_format_order(self, order):
            self._format = HailoFormat(self._format.type, order)

        @property
        def quant_infos(self):
            return [QuantInfo(self._spec.qp_zp, self._spec.qp_scale)]

        @property
        def is_nms(self):
            return False

    def __init__(self, hef, hef_path, vdevice):
        self._hef = hef
        self._hef_path = hef_path
        self._vdevice = vdevice
        self._batch_size = 0
        self._inputs = [InferModel.InferStream(s) for s in hef.inputs]
        self._outputs = [InferModel.InferStream(s) for s in hef.outputs]

    def set_batch_size(self, batch_size):
        if not isinstance(batch_size, int) or batch_size < 0:
            raise HailoRTInvalidArgumentException(_INVALID_ARGUMENT_WORDS)
        self._batch_size = batch_size

    def set_power_mode(self, power_mode):
        pass

    @property
    def input_names(self):
        return [s.name for s in self._inputs]

    @property
    def output_names(self):
        return [s.name for s in self._outputs]

    @property
    def inputs(self):
        return list(self._inputs)

    @property
    def outputs(self):
        return list(self._outputs)

    def _find(self, streams, name):
        if name == "" and len(streams) == 1:
            return streams[0]
        for s in streams:
            if s.name == name:
                return s
        raise HailoRTNotFoundException(_NOT_FOUND_WORDS)

    def input(self, name=""):
        return self._find(self._inputs, name)

    def output(self, name=""):
        return self._find(self._outputs, name)

    def configure(self):
        # HailoRT checks the HEF against the chip when it configures it. A hailo8l HEF runs on a
        # Hailo-8 (HailoRT only warns: "lower performance"); a hailo8 HEF does not run on a Hailo-8L.
        self._vdevice._check_open()
        if self._hef.arch == "hailo8" and self._vdevice._arch == DeviceArchitectureTypes.HAILO8L:
            raise HailoRTHEFNotCompatibleWithDevice(_NOT_COMPATIBLE_WORDS)
        return ConfiguredInferModel(self)


class ConfiguredInferModel(object):
    class Bindings(object):
        class InferStream(object):
            def __init__(self, spec, fmt):
                self._spec = spec
                self._format = fmt
                self._buffer = None

            def set_buffer(self, buffer):
                if not isinstance(buffer, numpy.ndarray):
                    raise TypeError("set_buffer(): incompatible function arguments")
                if not buffer.flags.c_contiguous:
                    raise HailoRTException("Buffer must be C_CONTIGUOUS")
                if not buffer.flags.writeable:
                    # pybind11's py::array::mutable_data() on a read-only array.
                    raise ValueError("array is not writeable")
                self._buffer = buffer

            def get_buffer(self, tf_format=False):
                return self._buffer

        def __init__(self, model):
            self._inputs = {s.name: self.InferStream(s._spec, s.format.type) for s in model._inputs}
            self._outputs = {s.name: self.InferStream(s._spec, s.format.type) for s in model._outputs}
            self._input_names = list(self._inputs)
            self._output_names = list(self._outputs)

        def _find(self, streams, names, name):
            if name == "" and len(names) == 1:
                name = names[0]
            if name not in streams:
                raise HailoRTNotFoundException(_NOT_FOUND_WORDS)
            return streams[name]

        def input(self, name=""):
            return self._find(self._inputs, self._input_names, name)

        def output(self, name=""):
            return self._find(self._outputs, self._output_names, name)

    def __init__(self, infer_model):
        self._infer_model = infer_model
        self._hef = infer_model._hef
        self._alive = True
        self._call_log_lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self._alive = False

    def create_bindings(self, input_buffers=None, output_buffers=None):
        if not self._alive:
            raise HailoRTException(_status_words(6, "HAILO_INVALID_OPERATION"))
        bindings = ConfiguredInferModel.Bindings(self._infer_model)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def shutdown(self):
        self._alive = False

    def run(self, bindings, timeout):
        if not self._alive:
            raise HailoRTException(_status_words(6, "HAILO_INVALID_OPERATION"))
        faults = _faults()
        if faults.get("crash"):
            # What a HailoRT segfault or a driver reset looks like from outside: the process is gone.
            os._exit(70)
        for binding in bindings:
            for stream in list(binding._inputs.values()) + list(binding._outputs.values()):
                buffer = stream._buffer
                expected = stream._spec.elements * numpy.dtype(_NUMPY_BY_FORMAT[stream._format]).itemsize
                if buffer is None or buffer.nbytes != expected:
                    raise HailoRTInvalidArgumentException(_INVALID_ARGUMENT_WORDS)
        self._log_call(len(bindings))
        timeout_s = max(0, timeout) / 1000.0
        if faults.get("hang"):
            time.sleep(timeout_s)
            raise HailoRTTimeout(_TIMEOUT_WORDS)
        slow_ms = float(faults.get("slow_ms", 0) or 0)
        if slow_ms > 0:
            if slow_ms / 1000.0 > timeout_s:
                time.sleep(timeout_s)
                raise HailoRTTimeout(_TIMEOUT_WORDS)
            time.sleep(slow_ms / 1000.0)
        if faults.get("fail"):
            raise HailoRTException(str(faults["fail"]))
        drift = float(faults.get("drift", 0) or 0)
        for binding in bindings:
            arrays = [binding._inputs[s.name]._buffer.reshape(-1) for s in self._hef.inputs]
            flat = (arrays[0] if len(arrays) == 1 else numpy.concatenate(arrays)).astype(numpy.float32, copy=False)
            y = self._hef.compute(flat, drift)
            for spec in self._hef.outputs:
                out = binding._outputs[spec.name]
                values = y + numpy.float32(spec.offset) if spec.offset else y
                target = out._buffer.reshape(-1)
                if out._format == FormatType.FLOAT32:
                    target[:] = values
                else:
                    info = numpy.iinfo(_NUMPY_BY_FORMAT[out._format])
                    q = numpy.round(values / spec.qp_scale + spec.qp_zp)
                    target[:] = numpy.clip(q, info.min, info.max)

    def _log_call(self, frames):
        path = os.environ.get("CONCLAVE_FAKE_HAILORT_CALL_LOG")
        if not path:
            return
        line = json.dumps({"frames": frames, "hef": self._infer_model._hef_path}) + "\n"
        with self._call_log_lock:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
