"""The protobuf wire codec of proto/conclave/v1/hailo_sidecar.proto, stdlib only.

There is no Python protobuf library on the boards (and no pip), so this module encodes and
decodes the few messages of the sidecar protocol from a schema table that declares the same
field numbers and types as the .proto; packages/testing/src/hailo/sidecar-schema.test.ts
compares the two (`python3 -m conclave_hailo.wire --schema`).

A decoded message is a dict of the fields present on the wire (proto3 defaults are not filled
in: use `dict.get(name, default)`). `bytes` fields decode to memoryview slices of the input, so
a 1.2 MB tensor is never copied by the decoder; `encode_parts` returns a list of buffers for
`socket.sendmsg`, so it is not copied by the encoder either.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

Buffer = Union[bytes, bytearray, memoryview]

# Protobuf wire types.
VARINT = 0
I64 = 1
LEN = 2
SGROUP = 3
EGROUP = 4
I32 = 5

MAP_STRING_STRING = "map<string,string>"
SCALAR_TYPES = ("string", "uint64", "uint32", "int64", "double", "bool", "bytes")
_UINT64_MAX = (1 << 64) - 1
_UINT32_MAX = (1 << 32) - 1
_DOUBLE = struct.Struct("<d")


class DecodeError(ValueError):
    """The input is not a valid encoding of the message it was decoded as."""


class EncodeError(ValueError):
    """A value does not fit the field it was given for."""


@dataclass(frozen=True)
class Field:
    name: str
    number: int
    type: str
    repeated: bool = False
    oneof: Optional[str] = None


def _f(name: str, number: int, type_: str, repeated: bool = False, oneof: Optional[str] = None) -> Field:
    return Field(name, number, type_, repeated, oneof)


# The messages of hailo_sidecar.proto, in its order. A field added there must be added here
# (the schema test fails until it is).
SCHEMA: Dict[str, Tuple[Field, ...]] = {
    "SidecarTensor": (
        _f("name", 1, "string"),
        _f("dtype", 2, "string"),
        _f("dims", 3, "int64", repeated=True),
        _f("data", 4, "bytes"),
    ),
    "SidecarVstream": (
        _f("name", 1, "string"),
        _f("dtype", 2, "string"),
        _f("shape", 3, "int64", repeated=True),
        _f("qp_scale", 4, "double"),
        _f("qp_zero_point", 5, "double"),
    ),
    "SidecarDeviceInfoRequest": (),
    "SidecarDeviceInfo": (
        _f("arch", 1, "string"),
        _f("serial", 2, "string"),
        _f("firmware_version", 3, "string"),
        _f("hailort_version", 4, "string"),
        _f("board_name", 5, "string"),
    ),
    "SidecarLoadRequest": (
        _f("model_id", 1, "string"),
        _f("hef_path", 2, "string"),
        _f("batch_size", 3, "uint32"),
        _f("formats", 4, MAP_STRING_STRING),
    ),
    "SidecarLoadResponse": (
        _f("inputs", 1, "SidecarVstream", repeated=True),
        _f("outputs", 2, "SidecarVstream", repeated=True),
        _f("hef_arch", 3, "string"),
    ),
    "SidecarInferRequest": (
        _f("model_id", 1, "string"),
        _f("inputs", 2, "SidecarTensor", repeated=True),
        _f("timeout_ms", 3, "uint32"),
    ),
    "SidecarInferResponse": (
        _f("outputs", 1, "SidecarTensor", repeated=True),
        _f("device_ms", 2, "double"),
        _f("batched_frames", 3, "uint32"),
    ),
    "SidecarUnloadRequest": (_f("model_id", 1, "string"),),
    "SidecarUnloadResponse": (),
    "SidecarHealthRequest": (),
    "SidecarHealthResponse": (
        _f("ok", 1, "bool"),
        _f("loaded", 2, "string", repeated=True),
        _f("inferences", 3, "uint64"),
        _f("uptime_s", 4, "double"),
    ),
    "SidecarRequest": (
        _f("id", 1, "uint64"),
        _f("device_info", 2, "SidecarDeviceInfoRequest", oneof="body"),
        _f("load", 3, "SidecarLoadRequest", oneof="body"),
        _f("infer", 4, "SidecarInferRequest", oneof="body"),
        _f("unload", 5, "SidecarUnloadRequest", oneof="body"),
        _f("health", 6, "SidecarHealthRequest", oneof="body"),
    ),
    "SidecarError": (
        _f("code", 1, "string"),
        _f("message", 2, "string"),
        _f("retryable", 3, "bool"),
    ),
    "SidecarResponse": (
        _f("id", 1, "uint64"),
        _f("error", 2, "SidecarError", oneof="body"),
        _f("device_info", 3, "SidecarDeviceInfo", oneof="body"),
        _f("load", 4, "SidecarLoadResponse", oneof="body"),
        _f("infer", 5, "SidecarInferResponse", oneof="body"),
        _f("unload", 6, "SidecarUnloadResponse", oneof="body"),
        _f("health", 7, "SidecarHealthResponse", oneof="body"),
    ),
}

_BY_NUMBER: Dict[str, Dict[int, Field]] = {m: {f.number: f for f in fs} for m, fs in SCHEMA.items()}
_BY_NAME: Dict[str, Dict[str, Field]] = {m: {f.name: f for f in fs} for m, fs in SCHEMA.items()}
_ONEOF_MEMBERS: Dict[str, Dict[str, Tuple[str, ...]]] = {}
for _m, _fs in SCHEMA.items():
    groups: Dict[str, List[str]] = {}
    for _field in _fs:
        if _field.oneof:
            groups.setdefault(_field.oneof, []).append(_field.name)
    _ONEOF_MEMBERS[_m] = {g: tuple(names) for g, names in groups.items()}


def schema_json() -> Dict[str, Dict[str, Dict[str, Any]]]:
    """The schema as `--schema` prints it; `oneof` appears only on the members of one."""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for message, fields in SCHEMA.items():
        entry: Dict[str, Dict[str, Any]] = {}
        for field in fields:
            desc: Dict[str, Any] = {"number": field.number, "type": field.type, "repeated": field.repeated}
            if field.oneof:
                desc["oneof"] = field.oneof
            entry[field.name] = desc
        out[message] = entry
    return out


def which_oneof(message: Dict[str, Any], message_type: str, group: str) -> Optional[str]:
    """The name of the member of `group` set in a decoded message, or None."""
    for name in _ONEOF_MEMBERS[message_type][group]:
        if name in message:
            return name
    return None


# --- decoding -----------------------------------------------------------------------------------


def _read_varint(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > _UINT64_MAX:
                raise DecodeError("varint exceeds 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


def _skip(buf: memoryview, pos: int, end: int, wire_type: int) -> int:
    if wire_type == VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire_type == I64:
        pos += 8
    elif wire_type == I32:
        pos += 4
    elif wire_type == LEN:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    else:
        # Groups (3, 4) were never in proto3; 6 and 7 are not wire types.
        raise DecodeError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise DecodeError("truncated field")
    return pos


def _scalar_from_varint(field: Field, raw: int) -> Any:
    if field.type == "int64":
        return _signed64(raw)
    if field.type == "uint32":
        if raw > _UINT32_MAX:
            # Protobuf truncates; a sidecar peer never sends this, so it is a corrupt frame.
            raise DecodeError(f"{field.name}: {raw} does not fit uint32")
        return raw
    if field.type == "bool":
        return raw != 0
    return raw


def _decode_string(field: Field, chunk: memoryview) -> str:
    try:
        return str(chunk, "utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"{field.name}: invalid UTF-8") from err


def _decode_map_entry(chunk: memoryview) -> Tuple[str, str]:
    key = ""
    value = ""
    pos = 0
    end = len(chunk)
    while pos < end:
        tag, pos = _read_varint(chunk, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number in (1, 2) and wire_type == LEN:
            length, pos = _read_varint(chunk, pos, end)
            if pos + length > end:
                raise DecodeError("truncated map entry")
            text = _decode_string(Field("map entry", number, "string"), chunk[pos:pos + length])
            pos += length
            if number == 1:
                key = text
            else:
                value = text
        elif number == 0:
            raise DecodeError("field number 0")
        else:
            pos = _skip(chunk, pos, end, wire_type)
    return key, value


def _decode_into(message_type: str, buf: memoryview, depth: int) -> Dict[str, Any]:
    if depth > 16:
        raise DecodeError("messages nested too deep")
    fields = _BY_NUMBER[message_type]
    out: Dict[str, Any] = {}
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = _read_varint(buf, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise DecodeError(f"{message_type}: field number 0")
        field = fields.get(number)
        if field is None:
            pos = _skip(buf, pos, end, wire_type)
            continue
        ftype = field.type
        if ftype == "double":
            if wire_type != I64:
                raise DecodeError(f"{message_type}.{field.name}: wire type {wire_type}, want {I64}")
            if pos + 8 > end:
                raise DecodeError(f"{message_type}.{field.name}: truncated double")
            out[field.name] = _DOUBLE.unpack_from(buf, pos)[0]
            pos += 8
            continue
        if ftype in ("uint64", "uint32", "int64", "bool"):
            if wire_type == VARINT:
                raw, pos = _read_varint(buf, pos, end)
                value = _scalar_from_varint(field, raw)
                if field.repeated:
                    out.setdefault(field.name, []).append(value)
                else:
                    out[field.name] = value
                continue
            if wire_type == LEN and field.repeated:
                # Packed: the proto3 default for repeated scalars.
                length, pos = _read_varint(buf, pos, end)
                stop = pos + length
                if stop > end:
                    raise DecodeError(f"{message_type}.{field.name}: truncated packed field")
                values = out.setdefault(field.name, [])
                while pos < stop:
                    raw, pos = _read_varint(buf, pos, stop)
                    values.append(_scalar_from_varint(field, raw))
                continue
            raise DecodeError(f"{message_type}.{field.name}: wire type {wire_type}, want {VARINT}")
        # Everything else is length-delimited.
        if wire_type != LEN:
            raise DecodeError(f"{message_type}.{field.name}: wire type {wire_type}, want {LEN}")
        length, pos = _read_varint(buf, pos, end)
        if pos + length > end:
            raise DecodeError(f"{message_type}.{field.name}: length {length} runs past the end")
        chunk = buf[pos:pos + length]
        pos += length
        if ftype == "string":
            value = _decode_string(field, chunk)
        elif ftype == "bytes":
            value = chunk
        elif ftype == MAP_STRING_STRING:
            key, text = _decode_map_entry(chunk)
            out.setdefault(field.name, {})[key] = text
            continue
        else:
            value = _decode_into(ftype, chunk, depth + 1)
        if field.repeated:
            out.setdefault(field.name, []).append(value)
        else:
            if field.oneof:
                # The last member on the wire wins, as in protobuf.
                for other in _ONEOF_MEMBERS[message_type][field.oneof]:
                    out.pop(other, None)
            # A singular message given twice would be merged by protobuf; no peer of ours sends
            # that, so the last one wins.
            out[field.name] = value
    return out


def decode(message_type: str, data: Buffer) -> Dict[str, Any]:
    """Decodes `data` as `message_type`; raises DecodeError on malformed input.

    Unknown fields are skipped. `bytes` values are memoryviews into `data`: keep `data` alive
    (and unchanged) as long as they are used.
    """
    if message_type not in SCHEMA:
        raise KeyError(message_type)
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return _decode_into(message_type, view, 0)


def peek_id(data: Buffer) -> Optional[int]:
    """Field 1 (the uint64 id of SidecarRequest) if it can be read before anything malformed."""
    view = memoryview(data)
    pos = 0
    end = len(view)
    try:
        while pos < end:
            tag, pos = _read_varint(view, pos, end)
            number, wire_type = tag >> 3, tag & 7
            if number == 1 and wire_type == VARINT:
                return _read_varint(view, pos, end)[0]
            if number == 0:
                return None
            pos = _skip(view, pos, end, wire_type)
    except DecodeError:
        return None
    return None


# --- encoding -----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _nbytes(part: Buffer) -> int:
    return part.nbytes if isinstance(part, memoryview) else len(part)


def _check_int(message_type: str, field: Field, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"{message_type}.{field.name}: {value!r} is not an integer")
    low, high = {"uint64": (0, _UINT64_MAX), "uint32": (0, _UINT32_MAX), "int64": (-(1 << 63), (1 << 63) - 1)}[field.type]
    if not low <= value <= high:
        raise EncodeError(f"{message_type}.{field.name}: {value} does not fit {field.type}")
    return value


def _encode_field(message_type: str, field: Field, value: Any, parts: List[Buffer]) -> int:
    """Appends the encoding of one field (all its values); returns the bytes appended."""
    ftype = field.type
    number = field.number
    size = 0
    if ftype == MAP_STRING_STRING:
        for key, text in value.items():
            entry = b"".join((
                _varint(1 << 3 | LEN), *_len_prefixed(str(key).encode("utf-8")),
                _varint(2 << 3 | LEN), *_len_prefixed(str(text).encode("utf-8")),
            ))
            chunk = _varint(number << 3 | LEN) + _varint(len(entry)) + entry
            parts.append(chunk)
            size += len(chunk)
        return size
    values = value if field.repeated else (value,)
    if field.repeated and ftype in ("uint64", "uint32", "int64", "bool", "double"):
        if not values:
            return 0
        if ftype == "double":
            body = b"".join(_DOUBLE.pack(float(v)) for v in values)
        elif ftype == "bool":
            body = bytes(1 if v else 0 for v in values)
        else:
            body = b"".join(_varint(_check_int(message_type, field, int(v))) for v in values)
        chunk = _varint(number << 3 | LEN) + _varint(len(body)) + body
        parts.append(chunk)
        return len(chunk)
    for item in values:
        if ftype == "double":
            chunk = _varint(number << 3 | I64) + _DOUBLE.pack(float(item))
        elif ftype == "bool":
            chunk = _varint(number << 3 | VARINT) + (b"\x01" if item else b"\x00")
        elif ftype in ("uint64", "uint32", "int64"):
            chunk = _varint(number << 3 | VARINT) + _varint(_check_int(message_type, field, item))
        elif ftype == "string":
            if not isinstance(item, str):
                raise EncodeError(f"{message_type}.{field.name}: {item!r} is not a string")
            raw = item.encode("utf-8")
            chunk = _varint(number << 3 | LEN) + _varint(len(raw)) + raw
        elif ftype == "bytes":
            n = _nbytes(item) if isinstance(item, (bytes, bytearray, memoryview)) else memoryview(item).nbytes
            head = _varint(number << 3 | LEN) + _varint(n)
            parts.append(head)
            # The payload itself is appended as is: no copy of a tensor here.
            parts.append(item if isinstance(item, (bytes, bytearray, memoryview)) else memoryview(item).cast("B"))
            size += len(head) + n
            continue
        else:
            sub_parts: List[Buffer] = []
            n = _encode_into(ftype, item, sub_parts)
            head = _varint(number << 3 | LEN) + _varint(n)
            parts.append(head)
            parts.extend(sub_parts)
            size += len(head) + n
            continue
        parts.append(chunk)
        size += len(chunk)
    return size


def _len_prefixed(raw: bytes) -> Tuple[bytes, bytes]:
    return _varint(len(raw)), raw


def _is_default(field: Field, value: Any) -> bool:
    if field.repeated or field.type == MAP_STRING_STRING:
        return len(value) == 0
    if field.oneof:
        # A set oneof member is always written, even when empty.
        return False
    if field.type in ("string",):
        return value == ""
    if field.type == "bytes":
        return _nbytes(value) == 0 if isinstance(value, (bytes, bytearray, memoryview)) else memoryview(value).nbytes == 0
    if field.type in ("uint64", "uint32", "int64", "double"):
        return value == 0
    if field.type == "bool":
        return not value
    return False


def _encode_into(message_type: str, message: Dict[str, Any], parts: List[Buffer]) -> int:
    by_name = _BY_NAME[message_type]
    size = 0
    oneofs_seen: Dict[str, str] = {}
    for field in SCHEMA[message_type]:
        if field.name not in message:
            continue
        value = message[field.name]
        if value is None or _is_default(field, value):
            continue
        if field.oneof:
            if field.oneof in oneofs_seen:
                raise EncodeError(f"{message_type}: {oneofs_seen[field.oneof]} and {field.name} are both in oneof {field.oneof}")
            oneofs_seen[field.oneof] = field.name
        size += _encode_field(message_type, field, value, parts)
    for name in message:
        if name not in by_name:
            raise EncodeError(f"{message_type} has no field {name!r}")
    return size


def encode_parts(message_type: str, message: Dict[str, Any]) -> Tuple[List[Buffer], int]:
    """The encoding as a list of buffers (bytes fields are passed through uncopied) and its size."""
    if message_type not in SCHEMA:
        raise KeyError(message_type)
    parts: List[Buffer] = []
    size = _encode_into(message_type, message, parts)
    return parts, size


def encode(message_type: str, message: Dict[str, Any]) -> bytes:
    """The encoding as one bytes object (copies; for tests and small messages)."""
    parts, _ = encode_parts(message_type, message)
    return b"".join(parts)


def main(argv: List[str]) -> int:
    if argv == ["--schema"]:
        json.dump(schema_json(), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    sys.stderr.write("usage: python3 -m conclave_hailo.wire --schema\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
