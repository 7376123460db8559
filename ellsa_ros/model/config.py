"""`ModelConfig`: every size and choice of the SA-MoE model, validated at construction.

Sizes: `tiny` (tests, < 5 M parameters), `small` (the embedded default, CPU real time),
`base` (GPU). Vocabulary sizes must match the shipped tokenizers (checked when a policy is
built). Routing maps each segment kind of a time block to an expert: with two experts, speech
in and text out go to the language expert (0), image, state and action to the action
expert (1), as in ELLSA.

`sentence_dim` > 0 adds a frozen sentence embedding of the heard text (all-MiniLM-L6-v2,
384-d, see sentence.py) as one `<sent>` slot on the language expert; 0 is off, and is what a
checkpoint written before the field existed loads as. `small` and `base` have it on.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

SEGMENT_KINDS = ("prompt", "speech", "image", "state", "text", "action")
ELLSA_ROUTING = {"prompt": 0, "speech": 0, "text": 0, "image": 1, "state": 1, "action": 1}

# Vocabulary sizes of the tokenizers shipped in assets/ (text BPE, FAST action BPE).
TEXT_VOCAB_SIZE = 768
ACTION_VOCAB_SIZE = 512


@dataclass(frozen=True)
class ModelConfig:
    size: str = "tiny"
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    d_ff: int = 256
    n_experts: int = 2
    routing: dict[str, int] = field(default_factory=lambda: dict(ELLSA_ROUTING))
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    text_vocab_size: int = TEXT_VOCAB_SIZE
    action_vocab_size: int = ACTION_VOCAB_SIZE
    # inputs
    cameras: tuple[str, ...] = ("agentview", "wrist")
    image_size: int = 128            # px, square; other sizes are resized
    image_grid: int = 4              # image tokens per camera = image_grid ** 2
    vision_channels: int = 32
    state_dim: int = 18              # LIBERO: eef pos 3 + axis-angle 3 + gripper 2 + eef vel 3 + last action 7
    speech_input: str = "text"       # "text": ASR text tokens; "audio": streaming log-mel encoder
    sample_rate: int = 16000
    n_mels: int = 40
    mel_frames_per_token: int = 20   # 10 ms mel hop -> 5 speech embeddings per second, as ELLSA
    max_heard_tokens: int = 32       # per block; longer heard text is truncated with a warning
    sentence_dim: int = 0            # sentence embedding of the heard text: 0 off, 384 all-MiniLM-L6-v2
    prompt: str = "You are a robot arm. Listen, look, speak and act."
    # outputs
    action_head: str = "fast"        # "fast": FAST tokens; "continuous": parallel chunk head (L1)
    chunk: int = 10                  # actions per chunk, at the control rate
    block_s: float = 1.0             # the block length the model was trained at (s)
    dof: int = 7
    fast_scale: float = 10.0         # DCT coefficients are multiplied by this, then rounded
    max_text_tokens: int = 12        # text decoded per block (speech at ~3 words/s fits in 1 s)
    max_action_tokens: int = 48      # FAST tokens per chunk
    # history
    keep_blocks: int = 2             # blocks kept in full; older ones collapse to markers + text
    history_tokens: int = 256        # markers + text of collapsed blocks kept, oldest out first
    format_version: int = 1

    def __post_init__(self) -> None:
        positive = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "n_experts", "text_vocab_size",
                    "action_vocab_size", "image_size", "image_grid", "vision_channels", "state_dim", "n_mels",
                    "mel_frames_per_token", "max_heard_tokens", "chunk", "dof", "max_text_tokens",
                    "max_action_tokens", "keep_blocks", "sample_rate")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head dim {self.d_model // self.n_heads} must be even for rotary positions")
        if self.image_size % self.image_grid or (self.image_size // self.image_grid) < 4:
            raise ValueError(f"image_size={self.image_size} must be a multiple of image_grid={self.image_grid}, "
                             "with patches of at least 4 px")
        if set(self.routing) != set(SEGMENT_KINDS):
            raise ValueError(f"routing must map exactly {SEGMENT_KINDS}, got {sorted(self.routing)}")
        bad = {k: e for k, e in self.routing.items() if not 0 <= e < self.n_experts}
        if bad:
            raise ValueError(f"routing sends {bad} to experts outside [0, {self.n_experts})")
        if self.speech_input not in ("text", "audio"):
            raise ValueError(f"speech_input must be 'text' or 'audio', got {self.speech_input!r}")
        if self.action_head not in ("fast", "continuous"):
            raise ValueError(f"action_head must be 'fast' or 'continuous', got {self.action_head!r}")
        if not self.cameras:
            raise ValueError("cameras must name at least one camera")
        if not 0.16 <= self.block_s <= 2.0:
            raise ValueError(f"block_s={self.block_s} must be within 0.16-2.0 s")
        if self.sentence_dim < 0:
            raise ValueError(f"sentence_dim must be 0 (off) or the sentence encoder's size, got {self.sentence_dim}")
        if self.history_tokens < 0 or self.fast_scale <= 0:
            raise ValueError("history_tokens must be >= 0 and fast_scale > 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def image_tokens(self) -> int:
        return self.image_grid ** 2

    def to_json(self) -> str:
        d = asdict(self)
        d["cameras"] = list(self.cameras)
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}")
        d = dict(d)
        if "cameras" in d:
            d["cameras"] = tuple(d["cameras"])
        return cls(**d)

    def dense(self) -> ModelConfig:
        """The same transformer with one expert: every token through one set of weights."""
        return replace(self, n_experts=1, routing={k: 0 for k in SEGMENT_KINDS})


SIZES: dict[str, dict] = {
    "tiny": dict(d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=256, vision_channels=32),
    "small": dict(d_model=256, n_layers=4, n_heads=8, n_kv_heads=2, d_ff=640, vision_channels=48, sentence_dim=384,
                  max_text_tokens=24),
    "base": dict(d_model=1024, n_layers=16, n_heads=16, n_kv_heads=4, d_ff=2816, vision_channels=128,
                 image_grid=8, max_text_tokens=24, sentence_dim=384),
}


def sized(size: str, **overrides) -> ModelConfig:
    """The named size with `overrides` applied (e.g. action_head="continuous")."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {', '.join(SIZES)}")
    return ModelConfig(size=size, **{**SIZES[size], **overrides})
