"""The speech benchmark's material: commands and stop words synthesized with all three voices,
pink noise at a set SNR, and the robot's own voice through a speaker-to-microphone path.

Speech start and end are found on the clean signal (10 ms frames within 35 dB of the loudest),
so that delays are measured from what a listener would call the word's edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, resample
from ellsa_ros.speech.tts import make_tts

RATE = ENGINE_RATE_HZ
VOICES = ("piper", "hibari", "espeak")
# Stop words are short: more speakers (rates) give enough trials to tell a 2% miss rate.
STOP_VOICES = (("piper", {}), ("hibari", {}), ("hibari", {"speed": 0.85}), ("hibari", {"speed": 1.15}),
               ("espeak", {}), ("espeak", {"words_per_minute": 140}), ("espeak", {"words_per_minute": 200}))
COMMANDS = (
    "pick up the black bowl",
    "put the bowl on the plate",
    "open the top drawer",
    "close the microwave",
    "move the cream cheese to the basket",
    "turn on the stove",
    "put the ketchup in the basket",
    "push the plate to the left",
    "pick up the alphabet soup",
    "place the mug on the shelf",
)
OBJECTS = ("black bowl", "bowl", "plate", "top drawer", "microwave", "cream cheese", "basket", "stove",
           "ketchup", "alphabet soup", "mug", "shelf")
STOP_UTTERANCES = ("Stop.", "Stop!", "Wait.", "Wait!", "Pause.", "Pause!", "Halt.", "Halt!")
ROBOT_REPLIES = (
    "Okay. I am picking up the black bowl now, and then I will put it on the plate.",
    "Sure, let me open the top drawer for you. It might take a few seconds.",
    "I placed the cream cheese in the basket. What should I do next?",
)


@dataclass
class Utterance:
    voice: str
    text: str
    audio: np.ndarray       # (n,) float32 at 16 kHz, clean, with 0.3 s of silence on each side
    start: int              # first speech sample
    end: int                # last speech sample


def speech_edges(audio: np.ndarray, floor_db: float = -35.0) -> tuple[int, int]:
    frames = len(audio) // 160
    energy = np.array([np.mean(np.square(audio[i * 160:(i + 1) * 160])) for i in range(frames)]) + 1e-12
    loud = np.nonzero(10 * np.log10(energy / energy.max()) > floor_db)[0]
    return int(loud[0] * 160), int((loud[-1] + 1) * 160)


def synthesize(texts: tuple[str, ...], voices: tuple = VOICES, pad_s: float = 0.3) -> list[Utterance]:
    """Every text in every voice; a voice is a backend name or (name, options of make_tts)."""
    out = []
    for spec in voices:
        name, options = (spec, {}) if isinstance(spec, str) else spec
        voice = name + "".join(f"@{v}" for v in options.values())
        tts = make_tts(name, **options)
        for text in texts:
            audio = resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, RATE)
            audio = 0.5 * audio / max(float(np.max(np.abs(audio))), 1e-6)      # same peak level for every voice
            pad = np.zeros(int(pad_s * RATE), np.float32)
            audio = np.concatenate([pad, audio, pad]).astype(np.float32)
            start, end = speech_edges(audio)
            out.append(Utterance(voice, text, audio, start, end))
    return out


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise (the spectrum of fans, motors and rooms more than white noise is), unit RMS."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    x = np.fft.irfft(spectrum, n)
    return (x / np.sqrt(np.mean(x * x))).astype(np.float32)


def add_noise(u: Utterance, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """The utterance with pink noise at `snr_db` over its speech part (None: clean, with -60 dB dither)."""
    speech_rms = float(np.sqrt(np.mean(np.square(u.audio[u.start:u.end]))))
    noise = pink_noise(len(u.audio), rng)
    level = 1e-3 if snr_db is None else speech_rms / 10 ** (snr_db / 20)
    return np.clip(u.audio + level * noise, -1, 1).astype(np.float32)


def speaker_to_mic(played: np.ndarray, delay_ms: float = 40.0, gain: float = 0.5) -> np.ndarray:
    """The robot's speaker as its microphone hears it: a delay, a gain and two early reflections."""
    d = int(delay_ms * RATE / 1000)
    y = np.zeros(len(played) + d + 400, np.float32)
    for extra, g in ((0, gain), (53, 0.35 * gain), (187, -0.2 * gain)):
        y[d + extra:d + extra + len(played)] += g * played
    return y[:len(played)]
