"""What travels in the envelopes' bodies: the PolicySpec of the handshake, Blocks and Decisions.

Decoding checks every field's type and every array's dtype and rank, so that a policy behind
the server only ever sees a well-formed Block, and the robot only ever queues a well-formed
chunk. Times stay on the robot's clock: the block's stamps go out and the Decision's actions
start at the block's `t_end` (its capture time), as for a policy in process.

`check_block` then holds a well-formed block to what the served model reads (its PolicySpec):
camera names (unknown_camera), image sides (image_too_small; an empty image always), and the
state (bad_state: non-finite, |value| over `state_limit`, or not `state_dim` values).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime.blocks import BLOCK_S_MAX, BLOCK_S_MIN, Block
from ..runtime.policy import Decision
from .protocol import ErrorCode, ProtocolError

ACTION_SPACES = ("ee_delta", "joint_positions", "joint_velocities")
# Robot states are metres, radians, m/s and gripper widths: |value| beyond this is a unit or
# driver fault, never an observation (a float32 state may hold 1e30 and stay finite).
STATE_LIMIT = 1000.0


@dataclass(frozen=True)
class PolicySpec:
    """What the served model expects and returns; sent in the handshake (WELCOME).

    block_s:      block length in seconds; the client gives up on an answer after two blocks.
    chunk:        actions per chunk.
    dof:          values per action.
    control_hz:   rate at which a chunk's actions are meant to run.
    action_space: how to read an action (ACTION_SPACES).
    model:        a name for logs (checkpoint path, class).
    cameras:      camera names the model reads; an image under another name is refused
                  (unknown_camera). Empty: any name.
    image_size:   the model's input side (px); an image with a smaller side is refused
                  (image_too_small), larger ones are the model's to resize. 0: any size.
    state_dim:    values in a state; another count is refused (bad_state). 0: any count.
    state_limit:  largest |value| a state may hold (bad_state beyond it); STATE_LIMIT.
    """
    block_s: float
    chunk: int
    dof: int
    control_hz: float
    action_space: str = "ee_delta"
    model: str = ""
    cameras: tuple[str, ...] = ()
    image_size: int = 0
    state_dim: int = 0
    state_limit: float = STATE_LIMIT

    def __post_init__(self) -> None:
        if not BLOCK_S_MIN <= self.block_s <= BLOCK_S_MAX:
            raise ValueError(f"PolicySpec.block_s={self.block_s} is outside [{BLOCK_S_MIN}, {BLOCK_S_MAX}] s")
        if self.chunk < 1 or self.dof < 1:
            raise ValueError(f"PolicySpec: chunk={self.chunk} and dof={self.dof} must be >= 1")
        if not self.control_hz > 0:
            raise ValueError(f"PolicySpec.control_hz={self.control_hz} must be > 0")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"PolicySpec.action_space={self.action_space!r}; choose from {ACTION_SPACES}")
        if not isinstance(self.cameras, tuple) or not all(isinstance(c, str) and c for c in self.cameras):
            raise ValueError(f"PolicySpec.cameras={self.cameras!r} must be a tuple of names")
        if self.image_size < 0 or self.state_dim < 0 or not self.state_limit > 0:
            raise ValueError(f"PolicySpec: image_size={self.image_size} and state_dim={self.state_dim} must be "
                             f">= 0, state_limit={self.state_limit} > 0")

    @property
    def horizon_s(self) -> float:
        """How long one chunk lasts at the control rate."""
        return self.chunk / self.control_hz

    def to_body(self) -> dict[str, Any]:
        return {"block_s": self.block_s, "chunk": self.chunk, "dof": self.dof, "control_hz": self.control_hz,
                "action_space": self.action_space, "model": self.model, "cameras": list(self.cameras),
                "image_size": self.image_size, "state_dim": self.state_dim, "state_limit": self.state_limit}

    @staticmethod
    def from_body(body: dict[str, Any]) -> PolicySpec:
        """The fields after `model` are optional (a server that predates them checks nothing)."""
        try:
            return PolicySpec(float(body["block_s"]), int(body["chunk"]), int(body["dof"]),
                              float(body["control_hz"]), str(body["action_space"]), str(body.get("model", "")),
                              tuple(str(c) for c in body.get("cameras", ())), int(body.get("image_size", 0)),
                              int(body.get("state_dim", 0)), float(body.get("state_limit", STATE_LIMIT)))
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(ErrorCode.MALFORMED, f"policy spec is unusable: {e}") from None


# --- Block ---------------------------------------------------------------------------------

def block_to_body(b: Block) -> dict[str, Any]:
    return {
        "index": b.index, "t_start": b.t_start, "t_end": b.t_end,
        "audio": np.asarray(b.audio, np.float32), "sample_rate": b.sample_rate,
        "images": dict(b.images), "image_stamps": dict(b.image_stamps),
        "state": b.state, "state_stamp": b.state_stamp,
        "utterances": [np.asarray(u, np.float32) for u in b.utterances],
        "heard": b.heard, "user_speaking": b.user_speaking, "interrupted": b.interrupted,
        "keywords": list(b.keywords), "said": b.said, "robot_speaking": b.robot_speaking,
        "acting": b.acting, "stale": list(b.stale), "dropped_blocks": b.dropped_blocks,
    }


def block_from_body(d: dict[str, Any]) -> Block:
    """Raises ProtocolError(MALFORMED) naming the first field that is wrong."""
    images = _get(d, "images", dict)
    stamps = _get(d, "image_stamps", dict)
    for cam, img in images.items():
        _check_array(f"images[{cam!r}]", img, ndim=3, kinds="u")
        if img.shape[2] != 3 or img.dtype != np.uint8:
            raise ProtocolError(ErrorCode.MALFORMED, f"images[{cam!r}] is {img.dtype}{img.shape}, not (H, W, 3) uint8")
        if not isinstance(stamps.get(cam), (int, float)):
            raise ProtocolError(ErrorCode.MALFORMED, f"image_stamps has no number for camera {cam!r}")
    state = d.get("state")
    if state is not None:
        _check_array("state", state, ndim=1, kinds="f", finite=False)   # check_block names bad values
    utterances = _get(d, "utterances", list)
    for i, u in enumerate(utterances):
        _check_array(f"utterances[{i}]", u, ndim=1, kinds="f")
    state_stamp = d.get("state_stamp")
    if state_stamp is not None and not isinstance(state_stamp, (int, float)):
        raise ProtocolError(ErrorCode.MALFORMED, "state_stamp must be a number or nil")
    t_start, t_end = _get(d, "t_start", (int, float)), _get(d, "t_end", (int, float))
    if not (np.isfinite(t_start) and np.isfinite(t_end) and t_start <= t_end):
        raise ProtocolError(ErrorCode.MALFORMED, f"block times t_start={t_start}, t_end={t_end} are not in order")
    return Block(
        index=_get(d, "index", int), t_start=float(t_start), t_end=float(t_end),
        audio=_check_array("audio", _get(d, "audio", np.ndarray), ndim=1, kinds="f").astype(np.float32, copy=False),
        sample_rate=_get(d, "sample_rate", int),
        images={str(k): v for k, v in images.items()},
        image_stamps={str(k): float(v) for k, v in stamps.items()},
        state=None if state is None else state.astype(np.float32, copy=False),
        state_stamp=None if state_stamp is None else float(state_stamp),
        utterances=[u.astype(np.float32, copy=False) for u in utterances],
        heard=_get(d, "heard", str), user_speaking=_get(d, "user_speaking", bool),
        interrupted=_get(d, "interrupted", bool), keywords=tuple(_strings(d, "keywords")),
        said=_get(d, "said", str), robot_speaking=_get(d, "robot_speaking", bool),
        acting=_get(d, "acting", bool), stale=tuple(_strings(d, "stale")),
        dropped_blocks=_get(d, "dropped_blocks", int),
    )


def check_block(b: Block, spec: PolicySpec) -> None:
    """Raises ProtocolError (unknown_camera, image_too_small, bad_state) naming what the served
    model cannot read; a block that passes reaches the policy."""
    if spec.cameras:
        unknown = sorted(set(b.images) - set(spec.cameras))
        if unknown:
            raise ProtocolError(ErrorCode.UNKNOWN_CAMERA, f"images from camera(s) {unknown}: the model reads "
                                                          f"{list(spec.cameras)}")
    for cam, img in b.images.items():
        h, w = img.shape[:2]
        if min(h, w) < max(1, spec.image_size):
            need = f"at least {spec.image_size}x{spec.image_size}" if spec.image_size else "a non-empty image"
            raise ProtocolError(ErrorCode.IMAGE_TOO_SMALL, f"images[{cam!r}] is {h}x{w} px: the model needs {need}")
    if b.state is None:
        return
    if spec.state_dim and b.state.shape != (spec.state_dim,):
        raise ProtocolError(ErrorCode.BAD_STATE, f"state has {b.state.size} values, the model reads {spec.state_dim}")
    if not np.all(np.isfinite(b.state)):
        where = np.flatnonzero(~np.isfinite(b.state)).tolist()
        raise ProtocolError(ErrorCode.BAD_STATE, f"state contains NaN or inf at index {where}")
    if b.state.size and float(np.abs(b.state).max()) > spec.state_limit:
        i = int(np.argmax(np.abs(b.state)))
        raise ProtocolError(ErrorCode.BAD_STATE, f"state[{i}] = {float(b.state[i]):.6g} is beyond "
                                                 f"+-{spec.state_limit:g} (PolicySpec.state_limit)")


# --- Decision ------------------------------------------------------------------------------

def decision_to_body(dec: Decision) -> dict[str, Any]:
    actions = None if dec.actions is None else np.asarray(dec.actions, np.float32)
    return {"actions": actions, "say": dec.say, "reject": dec.reject, "cancel": bool(dec.cancel),
            "done": bool(dec.done), "heard": dec.heard, "info": _plain(dec.info)}


def decision_from_body(d: dict[str, Any], spec: PolicySpec) -> Decision:
    """Checks the chunk against the handshake's spec: (n, dof) finite float, 1 <= n."""
    actions = d.get("actions")
    if actions is not None:
        _check_array("actions", actions, ndim=2, kinds="f")
        if actions.shape[0] < 1 or actions.shape[1] != spec.dof:
            raise ProtocolError(ErrorCode.MALFORMED, f"actions {actions.shape}, expected (n >= 1, {spec.dof})")
        actions = actions.astype(np.float32, copy=False)
    reject = d.get("reject")
    if reject is not None and not isinstance(reject, str):
        raise ProtocolError(ErrorCode.MALFORMED, "reject must be a string or nil")
    return Decision(actions=actions, say=_get(d, "say", str), reject=reject, cancel=_get(d, "cancel", bool),
                    done=_get(d, "done", bool), heard=_get(d, "heard", str), info=dict(_get(d, "info", dict)))


def _plain(x: Any, depth: int = 0) -> Any:
    """Keeps what msgpack can carry; anything else in a policy's `info` travels as its repr."""
    if depth > 16:
        return repr(x)
    if x is None or isinstance(x, (bool, int, float, str, bytes, np.ndarray, np.generic)):
        if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":
            return repr(x)
        return x
    if isinstance(x, dict):
        return {str(k): _plain(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, depth + 1) for v in x]
    return repr(x)


def _get(d: dict[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise ProtocolError(ErrorCode.MALFORMED, f"field {key!r} is missing")
    v = d[key]
    # bool is an int in Python; a field that wants an int must not take True.
    if not isinstance(v, types) or (types is int and isinstance(v, bool)):
        raise ProtocolError(ErrorCode.MALFORMED, f"field {key!r} is a {type(v).__name__}")
    return v


def _strings(d: dict[str, Any], key: str) -> list[str]:
    v = _get(d, key, list)
    if not all(isinstance(s, str) for s in v):
        raise ProtocolError(ErrorCode.MALFORMED, f"field {key!r} must be a list of strings")
    return v


def _check_array(name: str, a: Any, ndim: int, kinds: str, finite: bool = True) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype.kind not in kinds:
        got = f"{a.dtype}{a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} is {got}, expected a {ndim}-d array of kind {kinds!r}")
    if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} contains NaN or inf")
    return a
