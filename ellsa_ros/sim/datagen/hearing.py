"""What the runtime hears in a dataset: its microphone tracks through the runtime's own listener.

Training on the text that was spoken teaches a model to act on words the robot never hears
as such: at run time the instruction reaches the model as the ASR transcript of what the
voice detector cut out of a noisy microphone. This pass plays every episode's microphone track
through the same listening path as `ellsa sim` (the listening front end, silero VAD and the
engine's `Reflex` segmentation, then the shipped Whisper transcriber with its guards and the
task scene's object names as its vocabulary; an utterance it refuses as unintelligible is
heard as nothing) and stores, beside each shard, when each utterance was handed over (the
end of the frame that handed it over) and what was transcribed:

    libero_object/task00/shard0000.msgpack.zst
    libero_object/task00/shard0000.heard.json     {"listener": {...}, "episodes": [[[t_s, text], ...], ...]}

The reader uses these with `BlockFormat(heard="asr")`. A sidecar that exists and names the
same listener is complete and kept; the pass is resumable and can be rerun when the listener
changes (another ASR model or VAD) without regenerating the data.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ellsa_ros.runtime.hearing import VAD, FrontEnd, Transcriber, Unintelligible
from ellsa_ros.runtime.reflex import Reflex, ReflexConfig
from ellsa_ros.sim.datagen.storage import SHARD_SUFFIX, read_manifest, read_shard

HEARD_SUFFIX = ".heard.json"
FRAME_MS = 20.0

Heard = list[tuple[float, str]]   # (seconds on the episode clock, transcript) per utterance


def heard_path(shard: Path) -> Path:
    shard = Path(shard)
    return shard.with_name(shard.name[:-len(SHARD_SUFFIX)] + HEARD_SUFFIX)


@dataclass(frozen=True)
class HandOver:
    """One utterance as the listener handed it over: `t_s` the end of the frame that handed it
    over (when the policy can have it), `start_s` where its audio starts in the track."""
    t_s: float
    start_s: float
    audio: np.ndarray


def hand_overs(mic: np.ndarray, sample_rate: int, vad: VAD, front_end: FrontEnd | None = None,
               reflex: ReflexConfig | None = None) -> Iterator[HandOver]:
    """The utterances the runtime's listener hands over from `mic` (int16 or float32 mono), in
    20 ms frames as the engine takes them, with their audio as the transcriber gets it."""
    audio = np.asarray(mic, np.float32)
    if np.issubdtype(np.asarray(mic).dtype, np.integer):
        audio = audio / 32768.0
    ear = Reflex(vad, None, reflex or ReflexConfig(), sample_rate, front_end)   # resets vad and front end
    n = int(round(sample_rate * FRAME_MS / 1000.0))
    for i in range(len(audio) // n):
        r = ear.hear(audio[i * n:(i + 1) * n], robot_speaking=False)
        if r.utterance is not None:
            t = (i + 1) * n / sample_rate
            yield HandOver(round(t, 4), round(t - r.utterance_lag_s - len(r.utterance) / sample_rate, 4), r.utterance)


def listen(mic: np.ndarray, sample_rate: int, vad: VAD, transcriber: Transcriber,
           reflex: ReflexConfig | None = None, front_end: FrontEnd | None = None, prompt: str = "") -> Heard:
    """Each utterance the runtime's listener hands over from `mic`, with the time its last frame
    ended and its transcript (empty and unintelligible transcripts are dropped: the runtime
    would hand the policy no text for them either). `prompt`: the scene's vocabulary."""
    out: Heard = []
    for u in hand_overs(mic, sample_rate, vad, front_end, reflex):
        try:
            text = transcriber.transcribe(u.audio, prompt).strip()
        except Unintelligible:
            continue
        if text:
            out.append((u.t_s, text))
    return out


def listener_identity(transcriber: Transcriber, vad: VAD, front_end: FrontEnd | None = None) -> dict:
    """What decides the transcripts: a sidecar made by another listener is redone."""
    config = getattr(transcriber, "config", None)
    ears = None if front_end is None else getattr(front_end, "identity", lambda: repr(front_end))()
    return {"asr": type(transcriber).__name__, "asr_config": repr(config), "vad": type(vad).__name__,
            "vad_config": repr(getattr(vad, "config", None)), "frame_ms": FRAME_MS,
            "reflex": repr(ReflexConfig()), "front_end": ears, "vocabulary": "scene"}


@functools.lru_cache(maxsize=256)
def _scene_words(suite: str, task_id: int) -> str:
    from ellsa_ros.sim.suites import scene_vocabulary, task_spec
    return ", ".join(scene_vocabulary(task_spec(suite, task_id)))


def _scene_prompt(episode) -> str:
    """The vocabulary the runtime's listener has in this episode's scene (`ellsa sim` passes the same)."""
    return _scene_words(episode.suite, int(episode.task_id))


def read_heard(shard: Path, expected_episodes: int) -> list[Heard]:
    """The transcripts stored beside `shard`; FileNotFoundError saying how to make them."""
    path = heard_path(shard)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: make the transcripts with `ellsa datagen --transcribe "
                                f"{shard.parents[2]}` (or read the dataset with heard='truth')")
    body = json.loads(path.read_text(encoding="utf-8"))
    episodes = body.get("episodes")
    if not isinstance(episodes, list) or len(episodes) != expected_episodes:
        raise ValueError(f"{path} holds transcripts of {len(episodes or [])} episodes, the shard {expected_episodes}")
    return [[(float(t), str(text)) for t, text in ep] for ep in episodes]


def transcribe_dataset(root: str | Path, vad: VAD, transcriber: Transcriber,
                       tick: Callable[[str], None] | None = None, front_end: FrontEnd | None = None) -> dict:
    """Writes the sidecar of every kept shard of the dataset at `root` that lacks one from this
    listener; returns counts. `tick(shard)` is called after each shard (progress);
    `front_end`: the runtime's listening front end (speech.make_front_end())."""
    root = Path(root)
    manifest = read_manifest(root)
    identity = listener_identity(transcriber, vad, front_end)
    counts = {"shards": 0, "made": 0, "kept": 0, "utterances": 0}
    for rel, header in sorted(manifest["shards"].items()):
        if header.get("kept", 0) <= 0:
            continue
        counts["shards"] += 1
        shard = root / rel
        path = heard_path(shard)
        if path.is_file():
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("listener") == identity:
                    counts["kept"] += 1
                    if tick:
                        tick(rel)
                    continue
            except ValueError:
                pass   # a damaged sidecar is made again
        episodes = read_shard(shard)["episodes"]
        heard = [listen(ep.mic, ep.sample_rate, vad, transcriber, front_end=front_end, prompt=_scene_prompt(ep))
                 for ep in episodes]
        counts["utterances"] += sum(len(h) for h in heard)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"listener": identity, "episodes": heard}), encoding="utf-8")
        os.replace(tmp, path)
        counts["made"] += 1
        if tick:
            tick(rel)
    return counts
