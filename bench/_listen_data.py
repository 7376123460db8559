"""The listening benchmark's material: LIBERO-Object instructions and paraphrases spoken by the
voices the listener was tuned on and by voices it never saw, in motor hum, fan noise and
babble at a set SNR.

Tuned-on voices are the project's own (piper, hibari, espeak en-us at its default rate):
settings were chosen on them only. Held-out voices are espeak-ng variants and rates no
setting was chosen on (female and British voices at 150-190 words a minute) and hibari at a
slower speed. A clip is noise from its first sample to its last, with the instruction in the
middle; a paused instruction is two parts with a pause between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench._speech_data import speech_edges
from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, resample
from ellsa_ros.speech.tts import make_tts

RATE = ENGINE_RATE_HZ
# (backend, options of make_tts); piper without its sampled prosody, so every run hears the same
# audio (with it, the babble and the piper clips changed from run to run, and WER by 1-4 points).
TUNED_VOICES = (("piper", {"vary": False}), ("hibari", {}), ("espeak", {"voice": "en-us", "words_per_minute": 165}))
HELDOUT_VOICES = (("espeak", {"voice": "en-gb+f3", "words_per_minute": 150}),
                  ("espeak", {"voice": "en-us+f2", "words_per_minute": 190}),
                  ("espeak", {"voice": "en-gb-x-rp", "words_per_minute": 170}),
                  ("hibari", {"speed": 0.85}))
NOISES = ("hum", "fan", "babble")
SNRS_DB = (20.0, 15.0, 10.0)
# The LIBERO-Object scene: what the robot may be asked to move, and where.
SCENE = ("alphabet soup", "cream cheese", "salad dressing", "barbecue sauce", "ketchup", "tomato sauce",
         "butter", "milk", "chocolate pudding", "orange juice", "basket")
# (kind, text, pause_s or None): "template" is the benchmark's own phrasing, "paraphrase" is not
# built from it, "absent" names something that is not in the scene, "paused" has a pause at "|".
SENTENCES = (
    ("template", "pick up the ketchup and place it in the basket", None),
    ("template", "pick up the milk and place it in the basket", None),
    ("template", "pick up the alphabet soup and place it in the basket", None),
    ("template", "pick up the tomato sauce and place it in the basket", None),
    ("paraphrase", "could you put the ketchup in the basket", None),
    ("paraphrase", "please grab the cream cheese and drop it into the basket", None),
    ("paraphrase", "the butter goes in the basket", None),
    ("paraphrase", "I would like the chocolate pudding in the basket please", None),
    ("paraphrase", "take the orange juice and put it in the basket", None),
    ("absent", "pick up the banana and place it in the basket", None),
    ("absent", "please hand me the screwdriver", None),
    ("paused", "put the salad dressing | in the basket", 0.8),
    ("paused", "pick up the milk | and place it in the basket", 1.0),
)
BABBLE_TEXTS = ("I think the meeting moved to Thursday afternoon.", "Did you see where I left my keys?",
                "The weather has been strange all week.", "We should order more paper for the printer.",
                "She said the train was running twenty minutes late.", "Let me know when the report is ready.")


@dataclass
class Clip:
    voice: str
    heldout: bool
    kind: str
    text: str               # the reference, without the pause mark
    speech: np.ndarray      # (n,) float32 at 16 kHz: the clean instruction, peak 0.5
    spans: list[tuple[int, int]]   # speech parts (first, last sample) within `speech`


def _voice_name(name: str, options: dict) -> str:
    return name + "".join(f"@{v}" for v in options.values())


def synthesize() -> list[Clip]:
    """Every sentence in every voice (clean)."""
    clips = []
    for heldout, voices in ((False, TUNED_VOICES), (True, HELDOUT_VOICES)):
        for name, options in voices:
            tts = make_tts(name, **options)
            for kind, text, pause_s in SENTENCES:
                parts, spans, at = [], [], 0
                for k, part in enumerate(p.strip() for p in text.split("|")):
                    audio = resample(np.concatenate(list(tts.synthesize(part))), tts.sample_rate, RATE)
                    lo, hi = speech_edges(audio)
                    audio = audio[lo:hi]
                    if k:
                        gap = np.zeros(int(pause_s * RATE), np.float32)
                        parts.append(gap)
                        at += len(gap)
                    parts.append(audio)
                    spans.append((at, at + len(audio)))
                    at += len(audio)
                speech = np.concatenate(parts).astype(np.float32)
                speech = 0.5 * speech / max(float(np.max(np.abs(speech))), 1e-6)
                clips.append(Clip(_voice_name(name, options), heldout, kind, text.replace(" |", ""), speech, spans))
    return clips


def babble_source() -> np.ndarray:
    """Six other talkers' sentences, for `noise("babble")`."""
    out = []
    for name, options in TUNED_VOICES + HELDOUT_VOICES[:2]:
        tts = make_tts(name, **options)
        for text in BABBLE_TEXTS:
            out.append(resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, RATE))
    return np.concatenate(out).astype(np.float32)


def _lowpass(x: np.ndarray, hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / RATE)
    spectrum /= np.sqrt(1.0 + (f / hz) ** 4)            # second-order roll-off
    return np.fft.irfft(spectrum, len(x))


def noise(kind: str, n: int, rng: np.random.Generator, babble: np.ndarray | None = None) -> np.ndarray:
    """`n` samples of unit-RMS noise: "hum" a 120 Hz motor with harmonics over low-passed noise,
    "fan" broadband noise rolling off above 1 kHz with a blade tone, "babble" six talkers at once."""
    t = np.arange(n) / RATE
    if kind == "hum":
        f0 = 120.0 * (1.0 + 0.003 * np.sin(2 * np.pi * 0.3 * t))          # a motor's speed wanders a little
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 4, 5))
        x = x / np.sqrt(np.mean(x ** 2)) + 0.7 * _unit(_lowpass(rng.standard_normal(n), 300.0))
    elif kind == "fan":
        x = _unit(_lowpass(rng.standard_normal(n), 1000.0)) * (1.0 + 0.2 * np.sin(2 * np.pi * 4.0 * t))
        x = x + 0.3 * np.sin(2 * np.pi * 180.0 * t)
    elif kind == "babble":
        if babble is None:
            raise ValueError("babble noise needs the babble source (babble_source())")
        x = np.zeros(n)
        for _ in range(6):
            start = int(rng.integers(0, len(babble)))
            x += np.resize(np.roll(babble, -start), n)
    else:
        raise ValueError(f"noise kind {kind!r} is not one of {NOISES}")
    return _unit(x)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)).astype(np.float32)


def mix(clip: Clip, kind: str, snr_db: float, rng: np.random.Generator, babble: np.ndarray | None,
        lead_s: float = 1.0, tail_s: float = 2.5) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The microphone: noise at `snr_db` below the speech (RMS over its voiced parts) from start
    to end, the instruction from `lead_s`. Returns (audio, speech spans in it)."""
    lead, tail = int(lead_s * RATE), int(tail_s * RATE)
    n = lead + len(clip.speech) + tail
    voiced = np.concatenate([clip.speech[a:b] for a, b in clip.spans])
    level = float(np.sqrt(np.mean(voiced ** 2))) / 10 ** (snr_db / 20)
    mic = level * noise(kind, n, rng, babble)
    mic[lead:lead + len(clip.speech)] += clip.speech
    return np.clip(mic, -1, 1).astype(np.float32), [(lead + a, lead + b) for a, b in clip.spans]
