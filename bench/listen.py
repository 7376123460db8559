"""`ellsa bench listen`: the listening front end in a noisy room, on voices it was tuned on and
on voices it never saw.

Every clip (see `bench/_listen_data.py`) goes through the listener exactly as the runtime
and the data engine's heard-text pass run it (`sim.datagen.hearing.hand_overs`: the
filter, silero VAD, the reflex segmentation in 20 ms frames), and each utterance handed over
through the guarded Whisper transcriber with the scene's object names as its vocabulary.
Measured per instruction: word error rate of what the policy would receive, utterances
that open outside the instruction (spurious), instructions cut in two or more (split),
transcripts that ran away (loops, more words than the audio holds) and ones refused as
unintelligible; ASR time per utterance on one thread; the gain of the scene vocabulary on
sentences not built from the benchmark's template, and whether it turns absent names into
present ones; noise alone; broken audio (clipped, DC offset, silent, 8 kHz upsampled).
Settings were chosen on the tuned-on voices only.
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib

import numpy as np

from bench import _listen_data as data
from bench.speech import _words, word_errors
from ellsa_ros.runtime.hearing import Unintelligible
from ellsa_ros.sim.datagen.hearing import hand_overs
from ellsa_ros.speech import make_front_end, make_transcriber, make_vad
from ellsa_ros.speech.asr import runaway
from ellsa_ros.speech.pcm import resample

RATE = data.RATE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=0,
                        help="measure only about this many clips, every k-th (a quick check of the benchmark "
                             "itself; its figures are not the benchmark's); 0: all")


def _log(msg: str) -> None:
    print(f"[bench listen] {msg}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _rng(seed: int, *key: object) -> np.random.Generator:
    """The same noise for the same clip and condition, whatever else runs (settings compared fairly)."""
    return np.random.default_rng(zlib.crc32(repr((seed, *key)).encode()))


class Listener:
    """The front end, VAD, segmentation and guarded ASR, with what they did counted."""

    def __init__(self) -> None:
        self.front_end = make_front_end()
        self.vad = make_vad("silero")
        self.asr = make_transcriber(cpu_threads=1)      # the target is per core
        self.asr.transcribe(np.zeros(RATE, np.float32) + 1e-3 * np.sin(np.arange(RATE) / 3.0))
        self.latencies_ms: list[float] = []

    def utterances(self, mic: np.ndarray) -> list[tuple[int, int, int, np.ndarray]]:
        """(first sample, last sample, sample when handed over, audio) of each utterance."""
        out = []
        for u in hand_overs(mic, RATE, self.vad, self.front_end):
            start = int(round(u.start_s * RATE))
            out.append((start, start + len(u.audio), int(round(u.t_s * RATE)), u.audio))
        return out

    def transcribe(self, audio: np.ndarray, prompt: str) -> tuple[str, str | None]:
        t0 = time.perf_counter()
        try:
            text, refused = self.asr.transcribe(audio, prompt), None
        except Unintelligible as e:
            text, refused = "", e.reason
        self.latencies_ms.append(1000.0 * (time.perf_counter() - t0))
        return text, refused


class Tally:
    def __init__(self) -> None:
        self.edits = self.words = self.instructions = 0
        self.spurious = self.split = self.runaway = self.refused = self.handed = 0
        self.lead_ms: list[float] = []
        self.handover_ms: list[float] = []

    def wer(self) -> float | None:
        return round(self.edits / self.words, 4) if self.words else None


def hear(listener: Listener, mic: np.ndarray, spans: list[tuple[int, int]], reference: str, prompt: str,
         tally: Tally) -> str:
    """One instruction: what the policy would receive, counted into `tally`."""
    s0, s1 = spans[0][0], spans[-1][1]
    utterances = listener.utterances(mic)
    inside = [u for u in utterances if u[1] > s0 and u[0] < s1 + int(0.3 * RATE)]
    tally.instructions += 1
    tally.handed += len(utterances)
    tally.spurious += len(utterances) - len(inside)
    tally.split += len(inside) > 1
    texts = []
    for start, _end, handed, audio in inside:
        tally.lead_ms.append(1000.0 * (s0 - start) / RATE)
        tally.handover_ms.append(1000.0 * (handed - s1) / RATE)
        text, refused = listener.transcribe(audio, prompt)
        tally.refused += refused is not None
        texts.append(text)
    heard = " ".join(t for t in texts if t)
    # judged apart from the guard's own bound: far more words than were said, or a loop
    tally.runaway += len(_words(heard)) > 2 * len(_words(reference)) + 3 or \
        runaway(heard, (s1 - s0) / RATE + 1.0, 100.0, 3) is not None
    e, w = word_errors(reference, heard)
    tally.edits, tally.words = tally.edits + e, tally.words + w
    return heard


def measure(args: argparse.Namespace) -> dict:
    t_begin = time.perf_counter()
    _log("synthesizing the instructions in the tuned-on and held-out voices")
    clips = data.synthesize()
    if args.clips:
        clips = clips[::max(1, -(-len(clips) // args.clips))]
    babble = data.babble_source()
    listener = Listener()
    scene = ", ".join(data.SCENE)
    tallies: dict[tuple[bool, str, float], Tally] = {}
    result: dict = {"utterances": len(clips), "voices": {"tuned": sorted({c.voice for c in clips if not c.heldout}),
                                                         "heldout": sorted({c.voice for c in clips if c.heldout})},
                    "noises": list(data.NOISES), "snr_db": list(data.SNRS_DB), "asr_threads": 1,
                    "front_end": listener.front_end.identity()}
    by_kind: dict[str, Tally] = {}
    biased: dict[tuple[str, str, str], str] = {}      # (voice, text, noise) -> heard at 15 dB, with the vocabulary
    for snr in data.SNRS_DB:
        for kind in data.NOISES:
            _log(f"{kind} at {snr:g} dB")
            for clip in clips:
                if not clip.heldout and snr != 15.0:
                    continue     # the tuned-on voices are measured at 15 dB only (they chose the settings)
                mic, spans = data.mix(clip, kind, snr, _rng(args.seed, clip.voice, clip.text, kind, snr), babble)
                tally = tallies.setdefault((clip.heldout, kind, snr), Tally())
                heard = hear(listener, mic, spans, clip.text, scene, tally)
                if snr == 15.0:
                    k = by_kind.setdefault(clip.kind, Tally())
                    e, w = word_errors(clip.text, heard)
                    k.edits, k.words = k.edits + e, k.words + w
                    biased[(clip.voice, clip.text, kind)] = heard

    def merged(select) -> Tally:
        out = Tally()
        for key, t in tallies.items():
            if select(*key):
                for f in ("edits", "words", "instructions", "spurious", "split", "runaway", "refused"):
                    setattr(out, f, getattr(out, f) + getattr(t, f))
                out.lead_ms += t.lead_ms
                out.handover_ms += t.handover_ms
        return out

    every = merged(lambda h, k, s: True)
    result.update(
        wer_heldout_15db=merged(lambda h, k, s: h and s == 15.0).wer(),
        wer_tuned_15db=merged(lambda h, k, s: not h and s == 15.0).wer(),
        wer_heldout_by_noise={k: {f"{s:g}db": merged(lambda h, kk, ss, k=k, s=s: h and kk == k and ss == s).wer()
                                  for s in data.SNRS_DB} for k in data.NOISES},
        wer_tuned_15db_by_noise={k: merged(lambda h, kk, s, k=k: not h and kk == k and s == 15.0).wer()
                                 for k in data.NOISES},
        wer_15db_by_sentence_kind={k: t.wer() for k, t in by_kind.items()},
        instructions=every.instructions,
        spurious_utterances=round(every.spurious / every.instructions, 4), spurious_count=every.spurious,
        split_utterances=round(every.split / every.instructions, 4), split_count=every.split,
        runaway_transcripts=every.runaway, refused_unintelligible=every.refused,
        utterance_lead_ms_p50=_pct(every.lead_ms, 50), utterance_lead_ms_p95=_pct(every.lead_ms, 95),
        handover_after_speech_ms_p50=_pct(every.handover_ms, 50),
        handover_after_speech_ms_p95=_pct(every.handover_ms, 95),
        asr_latency_ms_p50=_pct(listener.latencies_ms, 50), asr_latency_ms_p95=_pct(listener.latencies_ms, 95),
        asr_retried=listener.asr.retried)

    _log("the scene vocabulary: paraphrases and absent names at 15 dB without it")
    gain = {"with": [0, 0], "without": [0, 0]}
    absent = {"clips": 0, "name_kept_with": 0, "name_kept_without": 0, "scene_object_inserted_with": 0,
              "scene_object_inserted_without": 0}
    for clip in clips:
        if clip.kind not in ("paraphrase", "absent"):
            continue
        for kind in data.NOISES:
            mic, spans = data.mix(clip, kind, 15.0, _rng(args.seed, clip.voice, clip.text, kind, 15.0), babble)
            plain = hear(listener, mic, spans, clip.text, "", Tally())
            for name, heard in (("with", biased[(clip.voice, clip.text, kind)]), ("without", plain)):
                e, w = word_errors(clip.text, heard)
                gain[name][0] += e
                gain[name][1] += w
                if clip.kind == "absent":
                    absent["clips"] += name == "with"
                    said = set(_words(clip.text)) - set(_words(" ".join(data.SCENE)))
                    absent[f"name_kept_{name}"] += bool(said & {"banana", "screwdriver"} & set(_words(heard)))
                    absent[f"scene_object_inserted_{name}"] += any(
                        obj in heard.lower() and obj not in clip.text for obj in data.SCENE)
    result["vocabulary_15db_paraphrase_and_absent"] = {
        "wer_with": round(gain["with"][0] / gain["with"][1], 4),
        "wer_without": round(gain["without"][0] / gain["without"][1], 4)}
    result["absent_names_15db"] = absent

    _log("noise alone")
    level = 10 ** (-10 / 20) * 0.08          # the 10 dB condition's noise level for a typical instruction
    alone = {}
    for kind in data.NOISES:
        mic = (level * data.noise(kind, 20 * RATE, _rng(args.seed, "alone", kind), babble)).astype(np.float32)
        alone[kind] = len(listener.utterances(mic))
    result["utterances_in_noise_alone_20s"] = alone

    _log("broken audio")
    result["bad_input"] = bad_input(listener, clips, _rng(args.seed, "bad"), babble, scene)
    result["wall_s"] = round(time.perf_counter() - t_begin, 1)
    return result


def bad_input(listener: Listener, clips: list, rng: np.random.Generator, babble: np.ndarray, scene: str) -> dict:
    """Clipped, DC-offset, silent and 8 kHz-upsampled instructions (tuned voices, hum at 15 dB)."""
    picked = [c for c in clips if not c.heldout and c.kind == "template"][:3]
    out = {}
    for name in ("clipped", "dc_offset", "silent", "upsampled_8k"):
        tally = Tally()
        for clip in picked:
            mic, spans = data.mix(clip, "hum", 15.0, rng, babble)
            if name == "clipped":
                mic = np.clip(mic * 8.0, -1.0, 1.0)
            elif name == "dc_offset":
                mic = np.clip(mic + 0.3, -1.0, 1.0)
            elif name == "silent":
                mic = np.zeros_like(mic)
            else:
                mic = resample(resample(mic, RATE, 8000), 8000, RATE)[:len(mic)]
            hear(listener, mic.astype(np.float32), spans, clip.text, scene, tally)
        out[name] = {"instructions": tally.instructions, "utterances": tally.handed, "wer": tally.wer(),
                     "refused": tally.refused,
                     "runaway": tally.runaway}
    return out
