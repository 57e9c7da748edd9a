"""Exact CDR bytes of ROS 2 messages written from plain data (no message objects).

rclpy's ``Publisher.publish`` also takes the serialised message as ``bytes``; building those
bytes with ``struct`` / numpy straight from our arrays is cheaper than building message objects
and letting rclpy convert every nested Point / ColorRGBA / Polygon object (~1.5 us each) into
its C struct (the pose node saves ~1/3 of its overhead with markers on; see bench_node).

Wire format (what ``rclpy.serialization.serialize_message`` gives with rmw_fastrtps /
rmw_cyclonedds, plain XCDR1 little-endian):

- a 4-byte encapsulation header ``00 01 00 00``; every alignment below is relative to its end;
- a primitive of size s (1, 2, 4, 8 bytes) starts at a multiple of s (padding before it: zeros
  here; rmw's serialiser leaves those bytes uninitialised, so comparisons skip them:
  :func:`same_bytes`, :func:`padding_mask`);
- ``string``: uint32 length including the NUL, the UTF-8 bytes, a NUL;
- sequence: uint32 element count, then the elements (the first one aligned as its first
  primitive; none, no padding, when empty); fixed arrays: the elements without a count;
- nested messages: their fields in order, no padding of their own.

The layout of a message class is read on first use (:func:`layout`, cached) from its
``SLOT_TYPES`` / ``get_fields_and_field_types()``, so fields a ROS distribution adds (Marker's
texture, uv_coordinates, mesh_file in Kilted) are written too, and compiled into one generated
Python function (nested messages inlined; ``layout(cls).source`` shows it). Bounded strings and
sequences are written like unbounded ones (their bounds are not checked). Plain data of a message is a
``dict`` field name -> value; a missing field takes the class's default value. Values:

- primitives: Python / numpy numbers (``bool`` for boolean); strings: ``str``;
- a nested message whose fields are all numbers ("flat": Time, Duration, Pose, Vector3,
  ColorRGBA, Point...): the sequence of its numbers in field order, e.g. ``pose=(x, y, z,
  qx, qy, qz, qw)``, ``stamp=(sec, nanosec)``; any other nested message: a dict;
- sequences of numbers or of flat messages whose numbers share one type (``Point[]``,
  ``ColorRGBA[]``, ``Point32[]``, ``uint8[]``): an array-like ``(N, k)`` or flat ``(N * k,)``
  (cast like the C serialiser: doubles rounded to the nearest float32);
- fixed arrays of numbers or of flat messages (``float32[4] bbox``): a flat sequence of numbers;
- sequences / arrays of other messages: lists of dicts.

Unsupported field types (wstring, long double, mixed-type flat sequences) make :func:`layout`
raise :class:`Unsupported`; callers then keep message objects.
"""
import functools
import importlib
import struct

import numpy as np
from rosidl_parser.definition import AbstractSequence, AbstractString, Array, BasicType, NamespacedType

ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little-endian, no options

#: rosidl basic type -> (struct code, numpy dtype)
_PRIMITIVES = {
    "boolean": ("?", np.bool_), "octet": ("B", np.uint8), "char": ("B", np.uint8), "uint8": ("B", np.uint8),
    "int8": ("b", np.int8), "int16": ("h", np.int16), "uint16": ("H", np.uint16), "int32": ("i", np.int32),
    "uint32": ("I", np.uint32), "int64": ("q", np.int64), "uint64": ("Q", np.uint64), "float": ("f", np.float32),
    "double": ("d", np.float64),
}
_U32 = struct.Struct("<I")
_ZEROS = bytes(8)


class Unsupported(TypeError):
    """A message type this writer cannot lay out (the caller keeps message objects)."""


def encode(cls, data: dict, fill: int = 0) -> bytes:
    """The CDR bytes of a ``cls`` message with the fields ``data`` (plain data, see above);
    padding bytes are ``fill``."""
    buf = bytearray(ENCAPSULATION)
    layout(cls).write(buf, data, _ZEROS if fill == 0 else bytes([fill]) * 8)
    return bytes(buf)


def self_check(cls, data: dict, msg) -> str | None:
    """None when :func:`encode` of ``data`` gives the bytes rclpy serialises ``msg`` (the same
    content as message objects) to (:func:`same_bytes`), else what went wrong (one line)."""
    from rclpy.serialization import serialize_message

    try:
        if same_bytes(cls, data, serialize_message(msg)):
            return None
        return f"{cls.__name__}: the CDR writer's bytes differ from rclpy's serialize_message"
    except Exception as exc:  # Unsupported layout, a type support that does not load, ...
        return f"{cls.__name__}: {type(exc).__name__}: {exc}"


def padding_mask(cls, data: dict) -> np.ndarray:
    """``(n_bytes,) bool``: which bytes of :func:`encode` are alignment padding."""
    zero, ones = (np.frombuffer(encode(cls, data, fill), dtype=np.uint8) for fill in (0, 255))
    return zero != ones


def same_bytes(cls, data: dict, serialized: bytes) -> bool:
    """True when ``serialized`` (e.g. rclpy's ``serialize_message``) equals :func:`encode` of
    ``data`` in length and every byte but the padding (the rmw serialiser leaves padding
    uninitialised, so its value there is arbitrary)."""
    ours = np.frombuffer(encode(cls, data), dtype=np.uint8)
    theirs = np.frombuffer(serialized, dtype=np.uint8)
    if ours.shape != theirs.shape:
        return False
    keep = ~padding_mask(cls, data)
    return bool(np.array_equal(ours[keep], theirs[keep]))


def _message_class(t: NamespacedType):
    return getattr(importlib.import_module(".".join(t.namespaces)), t.name)


def _primitive(t) -> tuple | None:
    if isinstance(t, BasicType):
        if t.typename not in _PRIMITIVES:
            raise Unsupported(f"CDR writer: basic type {t.typename!r} is not supported")
        return _PRIMITIVES[t.typename]
    return None


class _Source:
    """The lines of a generated writer function and the constants they name."""

    def __init__(self):
        self.lines = ["def write(buf, data, fill):"]
        self.names = {"struct": struct, "ndarray": np.ndarray, "asarray": np.asarray, "U32": _U32,
                      "ZEROS": _ZEROS, "visible": _visible, "string_bytes": _string_bytes, "bad_count": _bad_count}

    def const(self, value, hint: str) -> str:
        name = f"{hint}_{len(self.names)}"
        self.names[name] = value
        return name

    def var(self, hint: str) -> str:
        return self.const(None, hint)  # a unique name (the constant itself is never read)

    def add(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def pad(self, depth: int, size: int) -> None:
        """Padding so the next item of ``size`` bytes is aligned: (4 - len(buf)) mod size, as
        the offset counts from the end of the 4-byte header."""
        if size > 1:
            self.add(depth, f"n = (4 - len(buf)) & {size - 1}")
            self.add(depth, "if n:")
            self.add(depth + 1, "buf += fill[:n]")


def _visible(packed: bytes, pads: list, fill: bytes) -> bytes:
    """``packed`` with its padding bytes (offsets ``pads``) set to ``fill[0]`` (:func:`padding_mask`)."""
    out = bytearray(packed)
    for at in pads:
        out[at] = fill[0]
    return bytes(out)


def _string_bytes(recent: dict, text: str) -> bytes:
    """A string's CDR bytes after the padding (length with NUL, UTF-8, NUL), kept in ``recent``."""
    raw = text.encode()
    packed = _U32.pack(len(raw) + 1) + raw + b"\x00"
    if len(recent) >= 4096:  # names and labels repeat every frame; anything else must not pile up
        recent.clear()
    recent[text] = packed
    return packed


def _bad_count(name: str, numbers: int, per_item: int, size) -> ValueError:
    want = f"{size} items" if size is not None else f"a multiple of {per_item}"
    return ValueError(f"CDR field {name!r}: {numbers} numbers ({per_item} per item), expected {want}")


class _Run:
    """Consecutive number fields (primitives, fixed arrays of numbers, flat messages) packed
    with one ``struct.Struct`` per start offset modulo 8 (the padding inside depends on it)."""

    def __init__(self):
        self.fields: list[tuple[str, bool, object]] = []  # (name, takes several numbers, default)
        self.codes: list[str] = []

    def add(self, name: str, codes: list[str], many: bool, default) -> None:
        self.fields.append((name, many, default))
        self.codes.extend(codes)

    def finish(self) -> None:
        self.structs, self.pads = [], []  # per phase: the Struct, the offsets of its padding bytes
        for phase in range(8):
            fmt, offset, pads = "<", phase, []
            for code in self.codes:
                size = struct.calcsize("<" + code)
                pad = -offset % size
                pads.extend(range(offset - phase, offset - phase + pad))
                fmt += "x" * pad + code
                offset += pad + size
            self.structs.append(struct.Struct(fmt))
            self.pads.append(pads)

    def emit(self, src: _Source, data: str, depth: int) -> None:
        args = ", ".join(("*" if many else "") + f"{data}.get({name!r}, {src.const(default, 'default')})"
                         for name, many, default in self.fields)
        structs, pads, names = (src.const(self.structs, "run"), src.const(self.pads, "pads"),
                                src.const([f[0] for f in self.fields], "names"))
        src.add(depth, "phase = (len(buf) - 4) & 7")
        src.add(depth, "try:")
        src.add(depth + 1, f"packed = {structs}[phase].pack({args})")
        src.add(depth, "except (struct.error, TypeError) as exc:")
        src.add(depth + 1, f"raise ValueError(f'CDR fields {{{names}}}: {{exc}}') from None")
        if any(self.pads):  # padding inside the run at some offsets: made visible for padding_mask
            src.add(depth, f"if fill is not ZEROS and {pads}[phase]:")
            src.add(depth + 1, f"packed = visible(packed, {pads}[phase], fill)")
        src.add(depth, "buf += packed")


class _String:
    """A string field; the bytes of recent values are kept (names and labels repeat every frame)."""

    def __init__(self, name: str):
        self.name, self.default = name, ""

    def emit(self, src: _Source, data: str, depth: int) -> None:
        recent = src.const({}, "strings")
        src.add(depth, f"text = {data}.get({self.name!r}, {self.default!r})")
        src.add(depth, f"packed = {recent}.get(text)")
        src.add(depth, "if packed is None:")
        src.add(depth + 1, f"packed = string_bytes({recent}, text)")
        src.pad(depth, 4)
        src.add(depth, "buf += packed")


class _Numbers:
    """A sequence (with count) or fixed array (without) of numbers or of flat messages of one number type."""

    def __init__(self, name: str, dtype, per_item: int, size: int | None):
        self.name, self.per_item, self.size, self.default = name, per_item, size, None
        self.dtype = np.dtype(dtype).newbyteorder("<")

    def emit(self, src: _Source, data: str, depth: int) -> None:
        dtype, default = src.const(self.dtype, "dtype"), src.const(self.default, "default")
        src.add(depth, f"values = {data}.get({self.name!r}, {default})")
        src.add(depth, f"if type(values) is not ndarray or values.dtype != {dtype}:")
        src.add(depth + 1, f"values = asarray(values, dtype={dtype})")
        src.add(depth, f"count, rest = divmod(values.size, {self.per_item})")
        wrong = "rest" if self.size is None else f"rest or count != {self.size}"
        src.add(depth, f"if {wrong}:")
        src.add(depth + 1, f"raise bad_count({self.name!r}, values.size, {self.per_item}, {self.size})")
        if self.size is None:
            src.pad(depth, 4)
            src.add(depth, "buf += U32.pack(count)")
        src.add(depth, "if count:")
        src.pad(depth + 1, self.dtype.itemsize)
        src.add(depth + 1, "buf += values.tobytes()  # C order, whatever the shape")


class _Nested:
    """A nested message (dict), a fixed array or a sequence of them (lists of dicts); the inner
    message's writing is inlined."""

    def __init__(self, name: str, inner: "Layout", size: int | None, sequence: bool):
        self.name, self.inner, self.size, self.sequence, self.default = name, inner, size, sequence, None

    def emit(self, src: _Source, data: str, depth: int) -> None:
        value = src.var("value")
        src.add(depth, f"{value} = {data}.get({self.name!r}, {src.const(self.default, 'default')})")
        if not self.sequence and self.size is None:
            self.inner.emit(src, value, depth)
            return
        if self.sequence:
            src.pad(depth, 4)
            src.add(depth, f"buf += U32.pack(len({value}))")
        else:
            src.add(depth, f"if len({value}) != {self.size}:")
            src.add(depth + 1, f"raise ValueError('CDR field %r: %d items, expected %d' % "
                               f"({self.name!r}, len({value}), {self.size}))")
        item = src.var("item")
        src.add(depth, f"for {item} in {value}:")
        self.inner.emit(src, item, depth + 1)


class Layout:
    """How one message class is written: its fields as runs of numbers, strings, number
    arrays and nested messages, compiled into one Python function ``write(buf, data, fill)``
    (``source``: its text). ``flat_codes`` is the struct codes of all its numbers when it holds
    numbers only (then it travels as a tuple inside its parent), else None."""

    def __init__(self, cls):
        self.cls = cls
        names = list(cls.get_fields_and_field_types())
        types = list(cls.SLOT_TYPES)
        if len(names) != len(types):
            raise Unsupported(f"CDR writer: {cls.__name__} has {len(names)} fields but {len(types)} slot types")
        if not names:
            raise Unsupported(f"CDR writer: {cls.__name__} has no fields (its C struct holds a placeholder)")
        sample = cls()
        self.steps, codes_all = [], []
        run = None
        for name, t in zip(names, types):
            codes = _number_codes(t)
            step = None if codes is not None else _step(name, t)  # raises Unsupported first
            default = plain(getattr(sample, name), t)
            if step is None:  # numbers only: joins the current run
                if run is None:
                    run = _Run()
                    self.steps.append(run)
                run.add(name, codes, not isinstance(t, BasicType), default)
                codes_all.extend(codes)
            else:
                run = None
                step.default = default
                self.steps.append(step)
        for step in self.steps:
            if isinstance(step, _Run):
                step.finish()
        self.flat_codes = codes_all if all(isinstance(s, _Run) for s in self.steps) else None
        src = _Source()
        self.emit(src, "data", 1)
        self.source = "\n".join(src.lines)
        exec(compile(self.source, f"<cdr writer of {cls.__name__}>", "exec"), src.names)  # noqa: S102
        self.write = src.names["write"]

    def emit(self, src: _Source, data: str, depth: int) -> None:
        """Append the lines writing the message held by the variable ``data``."""
        for step in self.steps:
            step.emit(src, data, depth)


def _number_codes(t) -> list[str] | None:
    """The struct codes of a field made of numbers only (primitive, fixed array of numbers,
    flat message), else None."""
    prim = _primitive(t)
    if prim is not None:
        return [prim[0]]
    if isinstance(t, Array) and not isinstance(t, AbstractSequence):
        inner = _number_codes(t.value_type)
        return None if inner is None else inner * t.size
    if isinstance(t, NamespacedType):
        return layout(_message_class(t)).flat_codes
    return None


def _step(name: str, t):
    """The writer of a field that is not numbers only."""
    if isinstance(t, AbstractString):
        return _String(name)
    if isinstance(t, NamespacedType):
        return _Nested(name, layout(_message_class(t)), None, False)
    if isinstance(t, (Array, AbstractSequence)):
        size = None if isinstance(t, AbstractSequence) else t.size
        item = t.value_type
        codes = _number_codes(item)
        if codes is not None and len(set(codes)) == 1:
            return _Numbers(name, _PRIMITIVES[_code_type(codes[0])][1], len(codes), size)
        if isinstance(item, NamespacedType) and codes is None:
            return _Nested(name, layout(_message_class(item)), size, size is None)
    raise Unsupported(f"CDR writer: field {name!r} of type {t!r} is not supported")


def _code_type(code: str) -> str:
    return next(k for k, (c, _) in _PRIMITIVES.items() if c == code)


@functools.cache
def layout(cls) -> Layout:
    """The (cached) :class:`Layout` of the message class ``cls``."""
    return Layout(cls)


def plain(value, t=None):
    """A message (``t`` None) or a field value of rosidl type ``t`` as plain data (see above)."""
    if t is None or isinstance(t, NamespacedType):
        cls = type(value)
        if layout(cls).flat_codes is not None:
            return tuple(_flatten(value))
        return {name: plain(getattr(value, name), ft)
                for name, ft in zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES)}
    if isinstance(t, (BasicType, AbstractString)):
        return value
    item = t.value_type
    codes = _number_codes(item)
    if codes is not None:
        numbers = [v for x in value for v in _flatten(x)] if isinstance(item, NamespacedType) else list(value)
        return np.array(numbers, dtype=_PRIMITIVES[_code_type(codes[0])][1])
    return [plain(x, item) for x in value]


def _flatten(msg) -> list:
    """The numbers of a flat message in field order."""
    out = []
    for name, t in zip(type(msg).get_fields_and_field_types(), type(msg).SLOT_TYPES):
        value = getattr(msg, name)
        if isinstance(t, BasicType):
            out.append(value)
        elif isinstance(t, NamespacedType):
            out.extend(_flatten(value))
        elif isinstance(t.value_type, NamespacedType):
            for item in value:
                out.extend(_flatten(item))
        else:
            out.extend(value)
    return out
