"""`ellsa bench speech`: the speech stack on a synthesized command set, clean, in pink noise at
20 and 10 dB SNR, and mixed with the robot's own voice through a speaker-to-microphone path.

Measures VAD onset delay and false triggers, stop-word delay after the word ends and misses,
Whisper word error rate and latency per command, and TTS time to first audio and real-time
factor per backend. Progress goes to stderr; the result dict is printed last by `ellsa bench`.
"""
from __future__ import annotations

import argparse
import re
import sys
import time

import numpy as np

from bench import _speech_data as data
from ellsa_ros.speech import (
    make_echo_filter,
    make_front_end,
    make_keyword_spotter,
    make_transcriber,
    make_tts,
    make_vad,
)

CONDITIONS = {"clean": None, "20db": 20.0, "10db": 10.0}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frame-ms", type=float, default=20.0, help="microphone frame (default 20 ms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", type=int, default=0,
                        help="use only the first N commands and stop utterances (a quick check of the "
                             "benchmark itself; its figures are not the benchmark's); 0: all")


def _log(msg: str) -> None:
    print(f"[bench speech] {msg}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _frames(audio: np.ndarray, n: int):
    for i in range(0, len(audio) - n + 1, n):
        yield i + n, audio[i:i + n]        # (sample index at the frame's end, frame)


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edits, reference words): word-level Levenshtein distance."""
    r, h = _words(ref), _words(hyp)
    d = np.arange(len(h) + 1)
    for i in range(1, len(r) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(h) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return int(d[len(h)]), len(r)


def vad_onsets(vad, audio: np.ndarray, start: int, n: int, rate: int) -> float | None:
    vad.reset()
    for end, frame in _frames(audio, n):
        if vad.is_speech(frame) and end > start:
            return 1000.0 * (end - start) / rate
    return None


def first_keyword(spotter, audio: np.ndarray, after: int, until: int, n: int) -> tuple[int | None, int]:
    """(sample at which the first stop word was reported after `after`, words reported before it)."""
    spotter.reset()
    early = 0
    for end, frame in _frames(audio, n):
        if spotter.process(frame):
            if end > after and end <= until:
                return end, early
            early += 1
    return None, early


def measure(args: argparse.Namespace) -> dict:
    t_begin = time.perf_counter()
    rate, rng = data.RATE, np.random.default_rng(args.seed)
    n = int(round(args.frame_ms * rate / 1000))
    _log("synthesizing the command set with piper, hibari and espeak-ng")
    limit = args.commands or None
    commands = data.synthesize(data.COMMANDS[:limit])
    stops = data.synthesize(data.STOP_UTTERANCES[:limit], data.STOP_VOICES)
    robot = np.concatenate([u.audio for u in data.synthesize(data.ROBOT_REPLIES, ("piper",))])
    noisy = {c: {id(u): data.add_noise(u, snr, rng) for u in commands + stops} for c, snr in CONDITIONS.items()}
    result: dict = {"frame_ms": args.frame_ms, "utterances": {"commands": len(commands), "stop_words": len(stops)}}

    _log("VAD onset and false triggers")
    vad = make_vad("silero")
    onsets: dict[str, list[float]] = {}
    vad_missed = 0
    for c in CONDITIONS:
        onsets[c] = []
        for u in commands + stops:
            o = vad_onsets(vad, noisy[c][id(u)], u.start, n, rate)
            if o is None:
                vad_missed += 1
            else:
                onsets[c].append(o)
    every = [o for c in onsets for o in onsets[c]]
    result.update(vad_onset_ms_p50=_pct(every, 50), vad_onset_ms_p95=_pct(every, 95), vad_missed=vad_missed,
                  vad_onset_ms_p95_by_condition={c: _pct(v, 95) for c, v in onsets.items()})
    speech_rms = float(np.median([np.sqrt(np.mean(np.square(u.audio[u.start:u.end]))) for u in commands]))
    noise = speech_rms / 10 ** (10 / 20) * data.pink_noise(20 * rate, rng)
    vad.reset()
    result["vad_false_trigger_noise"] = round(float(np.mean([vad.is_speech(f) for _, f in _frames(noise, n)])), 4)

    _log("robot self-speech through the echo filter")
    echo_at_mic = data.speaker_to_mic(robot) + 1e-3 * data.pink_noise(len(robot), rng)
    echo = make_echo_filter()
    vad.reset()
    raw_vad = make_vad("silero")
    fired, fired_raw = [], []
    for end, frame in _frames(echo_at_mic, n):
        vad.far_end = bool(np.any(robot[end - n:end]))      # as the reflexes tell it while the robot speaks
        fired.append(vad.is_speech(echo.clean(frame, robot[end - n:end])))
        fired_raw.append(raw_vad.is_speech(frame))
    result.update(vad_false_trigger_self_speech=round(float(np.mean(fired)), 4),
                  vad_false_trigger_self_speech_unfiltered=round(float(np.mean(fired_raw)), 4),
                  echo_delay_ms=echo.delay_ms, echo_gain=round(echo.gain or 0.0, 3))

    _log("stop words: clean, noisy, and over the robot's voice")
    spotter = make_keyword_spotter()
    delays: dict[str, list[float]] = {}
    misses: dict[str, int] = {}
    for c in CONDITIONS:
        delays[c], misses[c] = [], 0
        for u in stops:
            hit, _ = first_keyword(spotter, noisy[c][id(u)], u.start, u.end + rate // 2, n)
            if hit is None:
                misses[c] += 1
            else:
                delays[c].append(1000.0 * (hit - u.end) / rate)
    # Over the robot: the user's word starts 2 s into a reply, as loud at the microphone as the echo.
    delays["self_speech"], misses["self_speech"] = [], 0
    onsets_mix: list[float] = []
    echo_rms = float(np.sqrt(np.mean(np.square(echo_at_mic[:8 * rate]))))
    offset = 2 * rate
    for u in stops:
        user = u.audio * (echo_rms / float(np.sqrt(np.mean(np.square(u.audio[u.start:u.end])))))
        length = offset + len(user) + rate // 2
        mic = echo_at_mic[:length].copy()
        mic[offset:offset + len(user)] += user
        echo.reset()
        vad.reset()
        spotter.reset()
        onset, hit = None, None
        for end, frame in _frames(mic, n):
            clean = echo.clean(frame, robot[end - n:end])
            vad.far_end = bool(np.any(robot[end - n:end]))
            if vad.is_speech(clean) and onset is None and end > offset + u.start:
                onset = 1000.0 * (end - offset - u.start) / rate
            if spotter.process(clean) and hit is None and offset + u.start < end <= offset + u.end + rate // 2:
                hit = end
        if onset is not None:
            onsets_mix.append(onset)
        if hit is None:
            misses["self_speech"] += 1
        else:
            delays["self_speech"].append(1000.0 * (hit - offset - u.end) / rate)
    all_delays = [d for v in delays.values() for d in v]
    trials = len(stops) * len(delays)
    false_alarms = sum(first_keyword(spotter, noisy["clean"][id(u)], 0, len(u.audio), n)[0] is not None
                       for u in commands)
    result.update(
        stop_word_delay_ms_p50=_pct(all_delays, 50), stop_word_delay_ms_p95=_pct(all_delays, 95),
        stop_word_miss_rate=round(sum(misses.values()) / trials, 4),
        stop_word_by_condition={c: {"delay_ms_p95": _pct(delays[c], 95), "misses": misses[c], "trials": len(stops)}
                                for c in delays},
        stop_word_false_alarm_commands=round(false_alarms / len(commands), 4),
        vad_onset_ms_p95_self_speech=_pct(onsets_mix, 95), vad_missed_self_speech=len(stops) - len(onsets_mix))

    _log("Whisper tiny.en transcripts per command, through the runtime's room filter")
    asr = make_transcriber(vocabulary=data.OBJECTS)
    room = make_front_end()

    def filtered(audio: np.ndarray) -> np.ndarray:
        room.reset()
        return np.concatenate([room.process(f) for _, f in _frames(audio, n)])
    asr.transcribe(commands[0].audio)                            # first call allocates
    latencies: list[float] = []
    for c in CONDITIONS:
        edits = words = 0
        per_voice: dict[str, list[int]] = {v: [0, 0] for v in data.VOICES}
        for u in commands:
            t0 = time.perf_counter()
            text = asr.transcribe(filtered(noisy[c][id(u)]))
            latencies.append(1000.0 * (time.perf_counter() - t0))
            e, w = word_errors(u.text, text)
            edits, words = edits + e, words + w
            per_voice[u.voice][0] += e
            per_voice[u.voice][1] += w
        result[f"asr_wer_{c}"] = round(edits / words, 4)
        result[f"asr_wer_{c}_by_voice"] = {v: round(e / w, 4) for v, (e, w) in per_voice.items()}
        _log(f"  WER {c}: {result[f'asr_wer_{c}']}")
    result["asr_latency_ms_p50"] = _pct(latencies, 50)
    result["asr_latency_ms_p95"] = _pct(latencies, 95)

    _log("TTS time to first audio and real-time factor")
    result["tts"] = {}
    for name in data.VOICES:
        tts = make_tts(name)
        firsts, compute_s, audio_s = [], 0.0, 0.0
        for text in data.ROBOT_REPLIES:
            t0 = time.perf_counter()
            for i, chunk in enumerate(tts.synthesize(text)):
                if i == 0:
                    firsts.append(1000.0 * (time.perf_counter() - t0))
                audio_s += len(chunk) / tts.sample_rate
            compute_s += time.perf_counter() - t0
        result["tts"][name] = {"first_audio_ms": _pct(firsts, 50), "rtf": round(compute_s / audio_s, 4)}
    result["wall_s"] = round(time.perf_counter() - t_begin, 1)
    return result
