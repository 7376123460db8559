"""Reading a dataset as the model trains on it: (Block, Decision) pairs, cut at read time.

`episode_blocks(episode, fmt)` rebuilds every time block exactly as `DuplexEngine` assembles
it when the same streams are played into it on the stepped clock (`SteppedLoop`): blocks
are cut at the first control tick at or after each block end; audio is the microphone
frames that started within the block and had arrived by then; images and state are the
latest at that tick (so every cut must be a tick with a stored frame: a block length that the
episode's frame rate does not serve is refused, naming both); utterances are handed over once
the voice detector has ended them (`Utterance.heard_t`). `heard` is their text as spoken
(`BlockFormat.heard="truth"`), or what the runtime's listener transcribed when it handed them
over ("asr": the transcripts `ellsa datagen --transcribe` stores beside each shard), or the one
or the other per episode ("mix", decided by the episode's key).

The target `Decision` of a block: the robot's turns that became due within it (words, and
reject / cancel / done), and the expert's labels at the control rate from the block's
observation on, while the robot is meant to act (no-op otherwise). Because nothing here is
tokenized, a new block length or tokenizer needs no regeneration.

What the robot said (`said`, `robot_speaking`, and interruptions of its voice) depends on when
the model decided to speak, so it is derived here from the targets: speech starts when a
block's Decision is applied (`latency_s` after the block was cut) and lasts as long as it did
in the robot's voice at generation time. The user's speech over it follows the reflex's
turn-taking rules (`ellsa_ros.runtime.reflex`): speech still going a backchannel length after
its onset pauses the voice; if it ends within the resume window the voice plays on, later by
the pause; if it goes on past the window, the voice is cut there. A stop word said alone is
recognized `stop_gap_s` of quiet after it (its block's `keywords`; the arm holds from then)
and the voice, paused, is cut once the block that carries its transcript is decided; so is a
short phrase that starts with one ("wait a second"), over within the stop window. A stop word
in a longer phrase is no reflex: the model hears it as words.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ellsa_ros.runtime.blocks import Block, check_block_s
from ellsa_ros.runtime.policy import Decision
from ellsa_ros.runtime.reflex import DEFAULT_STOP_WORDS, ReflexConfig, stop_phrase
from ellsa_ros.sim.datagen.episode import Episode, Utterance
from ellsa_ros.sim.datagen.hearing import read_heard
from ellsa_ros.sim.datagen.storage import read_manifest, read_shard
from ellsa_ros.sim.frame_rate import frame_interval, serves_blocks

EPS = 1e-9
HEARD_SOURCES = ("truth", "asr", "mix")


@dataclass(frozen=True)
class BlockFormat:
    """How blocks are cut: the engine's and the model's settings that matter at read time.
    block_s (s), chunk (actions per Decision), control_hz, frame_ms (microphone frames),
    latency_s (from a block's cut to its Decision being applied), preroll_s (audio kept before
    an utterance's onset); backchannel_s, resume_window_s, stop_window_s and stop_gap_s are the
    reflex's turn-taking and stop-word settings (`ReflexConfig`), stop_words its words."""
    block_s: float = 1.0
    chunk: int = 10
    control_hz: float = 20.0
    frame_ms: float = 20.0
    sample_rate: int = 16000
    cameras: tuple[str, ...] = ("agentview", "wrist")
    latency_s: float = 0.0
    preroll_s: float = 0.3
    backchannel_s: float = ReflexConfig.backchannel_s
    resume_window_s: float = ReflexConfig.resume_window_s
    stop_window_s: float = ReflexConfig.stop_window_s
    stop_gap_s: float = ReflexConfig.stop_gap_s
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    heard: str = "truth"

    def __post_init__(self) -> None:
        check_block_s(self.block_s)
        if self.heard not in HEARD_SOURCES:
            raise ValueError(f"heard={self.heard!r}: choose from {HEARD_SOURCES}")
        if self.chunk < 1 or self.control_hz <= 0 or self.sample_rate <= 0:
            raise ValueError(f"chunk ({self.chunk}), control_hz ({self.control_hz}) and sample_rate "
                             f"({self.sample_rate}) must be positive")
        if not 20.0 <= self.frame_ms <= 32.0:
            raise ValueError(f"frame_ms={self.frame_ms} must be within 20-32 ms")
        if self.latency_s < 0 or self.preroll_s < 0:
            raise ValueError(f"latency_s ({self.latency_s}) and preroll_s ({self.preroll_s}) must be >= 0")
        ReflexConfig(backchannel_s=self.backchannel_s, resume_window_s=self.resume_window_s,   # refuses what
                     stop_words=self.stop_words, stop_window_s=self.stop_window_s,           # the engine would
                     stop_gap_s=self.stop_gap_s)

    @classmethod
    def for_model(cls, model_config, block_s: float, **engine) -> BlockFormat:
        """The format of a `ModelConfig` (chunk, cameras, sample rate) at block length `block_s`."""
        return cls(block_s=block_s, chunk=model_config.chunk, cameras=tuple(model_config.cameras),
                   sample_rate=model_config.sample_rate, **engine)


@dataclass
class _Speech:
    text: str
    start: float
    end: float
    cut_at: float | None = None


def check_frame_rate(frame_hz: float | None, fmt: BlockFormat, what: str) -> None:
    """Refuses `fmt` when its block cuts fall on ticks without a stored frame; `frame_hz` None:
    a frame at every tick (data made before frame rates were chosen)."""
    if frame_hz is None:
        return
    every = frame_interval(frame_hz, fmt.control_hz, "frame_hz")
    if not serves_blocks(every, fmt.block_s, fmt.control_hz):
        raise ValueError(f"{what} stores camera frames at {frame_hz:g} Hz (every {every} control ticks at "
                         f"{fmt.control_hz:g} Hz); {fmt.block_s:g} s blocks are cut at ticks without a stored "
                         f"frame: read it at a block length that is a multiple of {every / fmt.control_hz:g} s")


def decode_image(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("a stored frame could not be decoded")
    return np.ascontiguousarray(bgr[..., ::-1])


def block_times(duration_s: float, fmt: BlockFormat) -> list[tuple[float, float, float]]:
    """(t_start, t_end, t_cut) of every block cut within the recording, with the engine's own
    arithmetic (block ends accumulate; a block is cut at the first control tick at its end)."""
    out, t0, period = [], 0.0, 1.0 / fmt.control_hz
    while True:
        t1 = t0 + fmt.block_s
        cut = math.ceil(t1 * fmt.control_hz - 1e-6) * period
        if cut > duration_s + EPS:
            return out
        out.append((t0, t1, cut))
        t0 = t1


def _decisions(ep: Episode, fmt: BlockFormat, times) -> list[Decision]:
    out, prev_cut = [], -math.inf
    for _, _, cut in times:
        turns = [r for r in ep.robot if prev_cut + EPS < r.t <= cut + EPS]
        d = Decision(say=" ".join(r.say for r in turns if r.say),
                     reject=next((r.reason for r in turns if r.control == "reject"), None),
                     cancel=any(r.control == "cancel" for r in turns), done=any(r.control == "done" for r in turns),
                     info={"speech_s": sum(r.speech_s for r in turns if r.say)})
        i = int(round(cut * fmt.control_hz))
        if d.control == "" and i < ep.steps and ep.acting[i]:
            n = 0
            while n < fmt.chunk and i + n < ep.steps and ep.acting[i + n]:
                n += 1
            d.actions = ep.labels[i:i + n].copy()
        out.append(d)
        prev_cut = cut
    return out


def stop_recognized(ep: Episode, fmt: BlockFormat) -> list[tuple[float, str, Utterance]]:
    """(when the reflex recognizes it, the word, its utterance) for every utterance that
    starts with a stop word and is over within `stop_window_s` of its onset ("stop", "wait a
    second"): it counts at the first microphone frame `stop_gap_s` of quiet after it."""
    frame_s = round(fmt.sample_rate * fmt.frame_ms / 1000.0) / fmt.sample_rate
    out = []
    for u in ep.utterances:
        word = stop_phrase(u.text, u.t_end - u.t_start, fmt.stop_words, fmt.stop_window_s)
        if word is not None:
            out.append((math.ceil((u.t_end + fmt.stop_gap_s) / frame_s - 1e-6) * frame_s, word, u))
    return out


def _judged_at(heard_t: float, fmt: BlockFormat, times) -> float:
    """When the engine applies the decision of the block that carries an utterance heard at
    `heard_t`: that block's cut plus the latency, on the control grid."""
    cut = next((c for _, _, c in times if heard_t <= c + EPS), math.inf)
    return math.ceil((cut + fmt.latency_s) * fmt.control_hz - 1e-6) / fmt.control_hz


def _robot_speech(ep: Episode, fmt: BlockFormat, times, decisions: list[Decision],
                  stops: list[tuple[float, str, Utterance]]) -> list[_Speech]:
    recognized_at = {id(u): t for t, _, u in stops}
    speech, free_at, period = [], 0.0, 1.0 / fmt.control_hz
    for (_, _, cut), d in zip(times, decisions):
        if not d.say:
            continue
        applied = math.ceil((cut + fmt.latency_s) * fmt.control_hz - 1e-6) * period
        s = _Speech(d.say, max(applied, free_at), 0.0)
        s.end = s.start + d.info["speech_s"]
        for u in sorted(ep.utterances, key=lambda u: u.t_start):   # the user's speech over it, in order
            paused_at = u.t_start + fmt.backchannel_s
            long_enough = u.t_end - u.t_start >= fmt.backchannel_s - EPS
            recognized = recognized_at.get(id(u))
            if long_enough and s.start < paused_at < s.end:
                if u.t_end >= u.t_start + fmt.resume_window_s - EPS:
                    s.cut_at = u.t_start + fmt.resume_window_s     # talked on past the window: an interruption
                elif recognized is not None:
                    s.cut_at = _judged_at(u.heard_t, fmt, times)   # held by the stop word until judged
                else:
                    s.end += u.t_end - paused_at                   # a backchannel: it plays on, later
            elif recognized is not None and s.start < recognized < s.end:
                s.cut_at = _judged_at(u.heard_t, fmt, times)
            if s.cut_at is not None:
                break
        speech.append(s)
        free_at = s.end if s.cut_at is None else s.cut_at
    return speech


def episode_blocks(ep: Episode, fmt: BlockFormat) -> list[tuple[Block, Decision]]:
    """Every block of the episode with its target Decision, for block length `fmt.block_s`."""
    if abs(ep.control_hz - fmt.control_hz) > 1e-9 or ep.sample_rate != fmt.sample_rate:
        raise ValueError(f"episode {ep.key} is at {ep.control_hz} Hz control / {ep.sample_rate} Hz audio; "
                         f"the format asks for {fmt.control_hz} Hz / {fmt.sample_rate} Hz")
    missing = [c for c in fmt.cameras if c not in ep.frames]
    if missing:
        raise ValueError(f"episode {ep.key} has no frames of camera(s) {missing}; it has {sorted(ep.frames)}")
    check_frame_rate(ep.frame_hz, fmt, f"episode {ep.key}")
    times = block_times(ep.duration_s, fmt)
    decisions = _decisions(ep, fmt, times)
    stops = stop_recognized(ep, fmt)
    speech = _robot_speech(ep, fmt, times, decisions, stops)
    mic = ep.mic.astype(np.float32) / 32768.0
    frame_n = int(round(fmt.sample_rate * fmt.frame_ms / 1000.0))
    frame_s = frame_n / fmt.sample_rate
    transcripts = _transcripts(ep, fmt)
    out, prev_cut, prev = [], -math.inf, None
    for k, ((t0, t1, cut), d) in enumerate(zip(times, decisions)):
        # frames that started in [t0, t1) and had fully arrived by the cut
        first = math.ceil(t0 / frame_s - 1e-6)
        last = min(math.ceil(t1 / frame_s - 1e-6), math.floor(cut / frame_s + 1e-6))
        audio = mic[first * frame_n:max(first, last) * frame_n].copy()
        i = int(round(cut * fmt.control_hz))
        window = [u for u in ep.utterances if prev_cut + EPS < u.heard_t <= cut + EPS]
        keywords = tuple(w for t, w, _ in stops if prev_cut + EPS < t <= cut + EPS)
        said = [s.text for s in speech if s.cut_at is None and prev_cut + EPS < s.end <= cut + EPS]
        cut_voice = any(s.cut_at is not None and prev_cut + EPS < s.cut_at <= cut + EPS for s in speech)
        halted = bool(keywords) or d.cancel
        acting = prev is not None and prev.actions is not None and not halted \
            and times[k - 1][1] + len(prev.actions) / fmt.control_hz > cut + EPS
        block = Block(
            index=k, t_start=t0, t_end=t1, audio=audio, sample_rate=fmt.sample_rate,
            images={c: decode_image(ep.frame(c, i)) for c in fmt.cameras},
            image_stamps={c: i / fmt.control_hz for c in fmt.cameras},
            state=ep.state[i].copy(), state_stamp=i / fmt.control_hz,
            utterances=[mic[int(round(max(0.0, u.t_start - fmt.preroll_s) * fmt.sample_rate)):
                            int(round(u.heard_t * fmt.sample_rate))].copy() for u in window],
            heard=" ".join(u.text for u in window) if transcripts is None else
            " ".join(text for t, text in transcripts if prev_cut + EPS < t <= cut + EPS),
            user_speaking=any(u.t_start <= cut < u.heard_t for u in ep.utterances),
            interrupted=bool(keywords) or cut_voice, keywords=keywords, said=" ".join(said),
            robot_speaking=any(s.start < cut < (s.cut_at if s.cut_at is not None else s.end) for s in speech),
            acting=acting)
        out.append((block, d))
        prev_cut, prev = cut, d
    return out


def _transcripts(ep: Episode, fmt: BlockFormat) -> list[tuple[float, str]] | None:
    """The listener's transcripts to read `heard` from, or None for the spoken text."""
    if fmt.heard == "truth" or (fmt.heard == "mix" and zlib.crc32(ep.key.encode()) % 2 == 0):
        return None
    if ep.asr is None:
        raise ValueError(f"episode {ep.key} has no transcripts (heard={fmt.heard!r}): make them with "
                         "`ellsa datagen --transcribe DIR`")
    return ep.asr


class DatasetReader:
    """The episodes of a dataset directory, and their blocks, streamed shard by shard."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.shards = sorted(p for p, h in self.manifest["shards"].items() if h["kept"] > 0)
        self.frame_hz: float | None = self.manifest.get("frame_hz")   # absent: a frame every step

    def check(self, fmt: BlockFormat) -> None:
        """Refuses, before any episode is read, a block length the dataset's frame rate cannot serve."""
        check_frame_rate(self.frame_hz, fmt, f"the dataset {self.root}")

    def episodes(self, shuffle_seed: int | None = None, part: tuple[int, int] = (0, 1),
                 transcripts: bool = False, tasks: dict[str, list[int]] | None = None) -> Iterator[Episode]:
        """Episodes of this reader's part (`part` = (i, n): every n-th shard from the i-th, so
        n loader workers read disjoint data), shard order shuffled when a seed is given; with
        `transcripts`, each carries what the runtime's listener heard (`Episode.asr`); with
        `tasks` ({suite: task ids}), only those tasks' shards are read."""
        i, n = part
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part}")
        order = list(self.shards[i::n])
        if tasks is not None:
            shards = self.manifest["shards"]
            order = [rel for rel in order if shards[rel]["task_id"] in tasks.get(shards[rel]["suite"], ())]
        rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        if rng is not None:
            rng.shuffle(order)
        for rel in order:
            episodes = read_shard(self.root / rel)["episodes"]
            if transcripts:
                for ep, heard in zip(episodes, read_heard(self.root / rel, len(episodes))):
                    ep.asr = heard
            if rng is not None:
                rng.shuffle(episodes)
            yield from episodes

    def sequences(self, fmt: BlockFormat, **kw) -> Iterator[list[tuple[Block, Decision]]]:
        """One list of (Block, Decision) per episode: what the trainer lays out as one sequence."""
        self.check(fmt)
        for ep in self.episodes(transcripts=fmt.heard != "truth", **kw):
            yield episode_blocks(ep, fmt)

    def blocks(self, fmt: BlockFormat, **kw) -> Iterator[tuple[Block, Decision]]:
        for seq in self.sequences(fmt, **kw):
            yield from seq
