"""The wire: versioned msgpack envelopes with raw numpy buffers, and the named message kinds.

One message is one ZeroMQ multipart message: frame 0 is a msgpack map (the envelope), the
following frames are the raw bytes of the numpy arrays it carries, in order. Inside the
envelope an array is a msgpack extension (`ARRAY_EXT`) holding `[frame index, dtype, shape]`,
so that arrays can sit anywhere in the body without colliding with ordinary map keys and the
pixels are never copied through msgpack.

Never pickle: a pickle from the network is code the receiver runs. msgpack carries only data,
and `decode` accepts only plain numeric dtypes whose byte count matches the frame exactly.

Envelope: {"v": PROTOCOL_VERSION, "kind": Kind, "id": request id (int) or None,
           "session": session token or "", "t": sender's clock (s), "body": map}
"v" must be the integer PROTOCOL_VERSION: 1.0 and true are refused (ErrorCode.VERSION).

Error codes (an ERROR body is {"code": ErrorCode value, "message": what was wrong}):
    malformed, version, too_large, unknown_kind   the message itself
    no_session     no session for this connection (or a stale token): send HELLO
    session_taken  HELLO for a robot whose live session belongs to another peer (another
                   CURVE key, or without CURVE another ZeroMQ routing identity)
    rate_limited   the peer sent HELLOs faster than the server's hello_per_s / hello_burst
    full           max_sessions robots are served already
    busy           the session already has max_queued_steps requests waiting
    unknown_camera an image under a camera name the served model does not read
    image_too_small an image with a side under the model's input size (or empty)
    bad_state      a state that is non-finite, beyond PolicySpec.state_limit or of the wrong size
    policy, internal  the policy (or the server) failed on a well-formed request

Arrays of any shape travel, empty ones included (an empty frame); anything `encode` cannot
carry raises EncodeError naming it.
"""
from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
ARRAY_EXT = 1
# Plain numeric kinds only: bool, signed/unsigned ints, floats. No objects, voids or strings.
ALLOWED_DTYPE_KINDS = frozenset("biuf")
_DTYPE_STR = re.compile(r"[<>|=]?[biuf](1|2|4|8)")
MAX_FRAMES = 64
MAX_HEADER_BYTES = 1 << 20


class Kind(str, enum.Enum):
    """Message kinds. The client sends HELLO, STEP, RESET, PING, BYE; the server answers."""
    HELLO = "hello"          # client -> server: open a session (body: robot, protocol)
    WELCOME = "welcome"      # server -> client: session token and the PolicySpec
    STEP = "step"            # client -> server: one Block
    DECISION = "decision"    # server -> client: the Decision for that block
    RESET = "reset"          # client -> server: forget the session's history
    RESET_OK = "reset_ok"
    PING = "ping"            # client -> server: clock sample, no model work
    PONG = "pong"
    BYE = "bye"              # client -> server: close the session (no answer)
    ERROR = "error"          # server -> client: body {"code": ErrorCode, "message": str}


class ErrorCode(str, enum.Enum):
    MALFORMED = "malformed"          # not an envelope we can read
    VERSION = "version"              # protocol version differs
    TOO_LARGE = "too_large"          # over the server's max_message_bytes
    UNKNOWN_KIND = "unknown_kind"    # a kind the server does not accept
    NO_SESSION = "no_session"        # no session for this peer (or a stale token): send HELLO
    SESSION_TAKEN = "session_taken"  # the robot name has a live session opened by another peer
    RATE_LIMITED = "rate_limited"    # too many HELLOs from this peer
    BUSY = "busy"                    # the session already has max_queued_steps waiting
    FULL = "full"                    # max_sessions reached
    UNKNOWN_CAMERA = "unknown_camera"    # an image from a camera the model does not read
    IMAGE_TOO_SMALL = "image_too_small"  # an image smaller than the model's input
    BAD_STATE = "bad_state"              # non-finite, out-of-bound or wrongly sized state
    POLICY = "policy"                # the policy raised or returned something unusable
    INTERNAL = "internal"


class ProtocolError(ValueError):
    """A message that cannot be read; `code` says which ErrorCode to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class EncodeError(TypeError):
    """A value that cannot go over the wire (an object array, a type msgpack cannot carry)."""


@dataclass
class Envelope:
    kind: Kind
    body: dict[str, Any]
    id: int | None = None
    session: str = ""
    t: float = 0.0


def encode(env: Envelope) -> list[bytes | memoryview]:
    """Encodes an envelope as multipart frames. Arrays become frames of their own (no copy
    when they are C-contiguous)."""
    buffers: list[memoryview] = []

    def default(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in ALLOWED_DTYPE_KINDS:
                raise EncodeError(f"cannot send an array of dtype {x.dtype} (shape {x.shape}): "
                                  "only bool, int, uint and float")
            a = np.ascontiguousarray(x)
            # memoryview cannot cast an empty array of two or more dimensions: send no bytes.
            buffers.append(memoryview(a).cast("B") if a.size else memoryview(b""))
            meta = msgpack.packb([len(buffers), a.dtype.str, list(a.shape)])
            return msgpack.ExtType(ARRAY_EXT, meta)
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, (tuple, set, frozenset)):
            return list(x)
        raise EncodeError(f"cannot send a {type(x).__name__} over the wire")

    header = {"v": PROTOCOL_VERSION, "kind": env.kind.value, "id": env.id, "session": env.session,
              "t": float(env.t), "body": env.body}
    return [msgpack.packb(header, default=default, use_bin_type=True), *buffers]


def frames_size(frames: list) -> int:
    return sum(len(f.buffer) if hasattr(f, "buffer") else len(f) for f in frames)


def decode(frames: list, max_bytes: int) -> Envelope:
    """Decodes multipart frames (bytes or zmq.Frame) into an Envelope. Arrays are writable:
    views onto received zmq.Frames (no copy), or copies of read-only input such as bytes.

    Raises ProtocolError naming what was wrong; never anything else for bad input.
    """
    if not frames:
        raise ProtocolError(ErrorCode.MALFORMED, "empty message")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(ErrorCode.MALFORMED, f"{len(frames)} frames, at most {MAX_FRAMES}")
    size = frames_size(frames)
    if size > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds max_message_bytes={max_bytes}")
    views = [memoryview(f.buffer if hasattr(f, "buffer") else f) for f in frames]
    if len(views[0]) > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"envelope of {len(views[0])} bytes exceeds {MAX_HEADER_BYTES}")
    used: set[int] = set()

    def ext_hook(code: int, data: bytes) -> Any:
        if code != ARRAY_EXT:
            raise ProtocolError(ErrorCode.MALFORMED, f"unknown msgpack extension type {code}")
        return _array(data, views, used)

    try:
        header = msgpack.unpackb(views[0], ext_hook=ext_hook, raw=False, strict_map_key=True,
                                 max_ext_len=1024, max_array_len=1 << 16, max_map_len=1 << 16)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises several types (ValueError, ExtraData, TypeError, ...)
        raise ProtocolError(ErrorCode.MALFORMED, f"envelope is not valid msgpack: {type(e).__name__}: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"envelope is a {type(header).__name__}, not a map")
    v = header.get("v")
    # type() and not ==: 1.0 == True == 1 in Python, and neither is version 1 on the wire.
    if type(v) is not int or v != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.VERSION,
                            f"protocol version {v!r}, this side speaks {PROTOCOL_VERSION} (an integer)")
    try:
        kind = Kind(header.get("kind"))
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown message kind {header.get('kind')!r}") from None
    rid, session, t, body = header.get("id"), header.get("session", ""), header.get("t", 0.0), header.get("body", {})
    if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool)):
        raise ProtocolError(ErrorCode.MALFORMED, f"request id must be an int, got {type(rid).__name__}")
    if not isinstance(session, str):
        raise ProtocolError(ErrorCode.MALFORMED, "session must be a string")
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        raise ProtocolError(ErrorCode.MALFORMED, "t must be a number")
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"body is a {type(body).__name__}, not a map")
    if len(used) != len(frames) - 1:
        raise ProtocolError(ErrorCode.MALFORMED, f"{len(frames) - 1} array frames sent, {len(used)} referenced")
    return Envelope(kind, body, rid, session, float(t))


def _array(data: bytes, views: list[memoryview], used: set[int]) -> np.ndarray:
    try:
        index, dtype_str, shape = msgpack.unpackb(data, raw=False)
    except Exception:
        raise ProtocolError(ErrorCode.MALFORMED, "array descriptor is not [index, dtype, shape]") from None
    if not isinstance(index, int) or not 1 <= index < len(views) or index in used:
        raise ProtocolError(ErrorCode.MALFORMED, f"array refers to frame {index!r}, which is missing or reused")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 8:
        raise ProtocolError(ErrorCode.MALFORMED, f"array shape {shape!r} is not a list of up to 8 sizes >= 0")
    # Only numpy's own `dtype.str` spellings of plain numbers reach np.dtype ("<f4", "|u1", "|b1").
    dtype = None
    if isinstance(dtype_str, str) and _DTYPE_STR.fullmatch(dtype_str):
        try:
            dtype = np.dtype(dtype_str)
        except TypeError:   # "f1", "b8": well-spelled sizes that do not exist
            dtype = None
    if dtype is None or dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise ProtocolError(ErrorCode.MALFORMED, f"array dtype {dtype_str!r} is not a plain bool/int/uint/float")
    n = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot wrap around
    if n != len(views[index]):
        raise ProtocolError(ErrorCode.MALFORMED,
                            f"array {dtype_str}{tuple(shape)} needs {n} bytes, frame {index} has {len(views[index])}")
    used.add(index)
    a = np.frombuffer(views[index], dtype=dtype).reshape(shape)
    # A received zmq.Frame is writable memory that the array keeps alive: no copy needed.
    # Read-only input (bytes) is copied, so the receiver may always write to its arrays.
    return a if a.flags.writeable else a.copy()
