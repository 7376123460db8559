"""`ellsa bench turns`: turn-taking in Full-Duplex-Bench's terms, with the real speech stack.

Each trial runs a fresh engine (silero VAD, pocketsphinx stop words, the listening front end)
on the stepped clock while the robot speaks a long sentence (hibari) and acts; a user clip
spoken by piper, hibari or espeak-ng (cycled, with speed variants) is mixed into the
microphone over clean room noise, pink noise at 20 dB or at 10 dB SNR (cycled). Four kinds:

- backchannel ("mm-hmm", "okay", ...): taken over if the robot's voice is cut;
  `resume_ms` from the clip's speech end to the paused voice resuming;
- interruption (a sentence said over the robot): taken over if its voice is cut;
  `yield_ms` from the clip's speech onset to the robot's voice falling silent (pause or cut);
- command (an ordinary instruction, no stop word): a plan cancelled by a stop word is a false
  halt; a hold the transcript released is a false hold (`false_holds`, `hold_ms_max`);
- stop (a stop word alone): no cancelled plan is a miss; `halt_ms` from the word's end to the
  arm's halt (it holds at once, and halts for good once the transcript is in).

The policy hears through the runtime's listener (Whisper tiny.en on the finished utterance),
so stop-word holds are judged by the transcript, as in `ellsa sim` and the policy node.

Latencies are in audio time on the stepped clock: what the reflex rules cost, frame by frame,
with no compute jitter (`ellsa bench barge-in` runs the same engine on the wall clock). The
robot's own voice does not reach the microphone (`ellsa bench speech` measures echo handling).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench import _speech_data as data
from bench.barge_in import TalkAndAct
from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.clock import SteppedClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.listening import ListeningPolicy
from ellsa_ros.runtime.loop import SteppedLoop
from ellsa_ros.runtime.policy import SteppedWorker

RATE = data.RATE
BACKCHANNELS = ("mm-hmm", "uh-huh", "okay", "yeah", "right", "sure", "got it", "I see")
INTERRUPTIONS = ("excuse me, put it in the basket instead", "sorry, what are you holding right now",
                 "no no, the other bowl please", "can you tell me where the plate is",
                 "hold on, I changed my mind about the bowl")
COMMANDS = data.COMMANDS + ("place it on the plate", "put the stopper in the bottle",
                            "hand me the plate please", "wait for the waiter to come")
STOPS = data.STOP_UTTERANCES
VOICES = (("piper", {}), ("hibari", {}), ("espeak", {}), ("hibari", {"speed": 0.85}),
          ("espeak", {"words_per_minute": 140}), ("hibari", {"speed": 1.15}), ("espeak", {"words_per_minute": 200}))
NOISES = (None, 20.0, 10.0)      # SNR in dB over the clip's speech; None: room noise only (-60 dBFS)
ROBOT_SAYS = ("I am picking up the black bowl between the plate and the ramekin, and then I will place it "
              "on the plate next to the cookie box, and after that I will wait for your next instruction.")
KINDS = {"backchannel": BACKCHANNELS, "interruption": INTERRUPTIONS, "command": COMMANDS, "stop": STOPS}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=20, help="trials of each kind (backchannel, interruption, "
                        "command, stop); 1 is a quick check of the benchmark itself, not its figures")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which kinds of trial to run")
    parser.add_argument("--robot-tts", default="hibari", help="TTS backend for the robot's voice")
    parser.add_argument("--backchannel-s", type=float, default=EngineConfig.backchannel_s,
                        help="user speech this long pauses the robot's voice")
    parser.add_argument("--resume-window-s", type=float, default=EngineConfig.resume_window_s,
                        help="user speech still going this long after onset cuts the paused voice")
    parser.add_argument("--stop-gap-s", type=float, default=EngineConfig.stop_gap_s,
                        help="quiet after a spotted stop word that makes it the word said alone")
    parser.add_argument("--seed", type=int, default=0)


def _log(msg: str) -> None:
    print(f"[bench turns] {msg}", file=sys.stderr, flush=True)


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


class Trial:
    """One engine, one user clip placed `lead_s` into the robot's sentence."""

    def __init__(self, speech: dict, clip: np.ndarray, lead_s: float, rng: np.random.Generator,
                 turns: dict[str, float]) -> None:
        self.mic_audio = np.concatenate([np.zeros(int(lead_s * RATE), np.float32), clip,
                                         np.zeros(int(2.0 * RATE), np.float32)])
        self.mic_audio += (1e-3 * rng.standard_normal(len(self.mic_audio))).astype(np.float32)
        cfg = EngineConfig(block_s=0.5, cameras=(), max_age_s={"camera": 1.0, "state": 1.0, "audio": 1.0}, **turns)
        policy = ListeningPolicy(TalkAndAct(ROBOT_SAYS, n=400), speech["asr"])
        self.engine = DuplexEngine(SteppedWorker(policy), ActionLimits.ee_delta(7), speech["tts"], cfg,
                                   vad=speech["vad"], keywords=speech["keywords"], front_end=speech["front_end"])
        self.log = ev.EventLog()
        self.engine.events.subscribe(self.log)
        self.voice: list[tuple[float, float]] = []    # (frame start, rms) of the robot's voice
        clock = SteppedClock()
        self.loop = SteppedLoop(self.engine, clock, mic=self._mic, sensors=lambda t: self.engine.push_state(
            np.zeros(7), t), on_speaker=lambda t0, f: self.voice.append((t0, float(np.sqrt(np.mean(f ** 2))))))
        self.engine.start(0.0)

    def _mic(self, t0: float, n: int) -> np.ndarray:
        i = int(round(t0 * RATE))
        out = self.mic_audio[i:i + n]
        return out if len(out) == n else np.concatenate([out, np.zeros(n - len(out), np.float32)])

    def run(self) -> list[ev.Event]:
        self.loop.run_until(len(self.mic_audio) / RATE)
        return self.log.events

    def speaking_at(self, t: float) -> bool:
        return any(rms > 1e-3 for t0, rms in self.voice if t - 0.3 <= t0 < t)


def _first(events: list[ev.Event], etype: type, after: float) -> ev.Event | None:
    return next((e for e in events if isinstance(e, etype) and e.t >= after - 1e-9), None)


def load_speech(args: argparse.Namespace) -> dict:
    from ellsa_ros import speech
    return {"tts": speech.make_tts(args.robot_tts), "vad": speech.make_vad("silero"),
            "keywords": speech.make_keyword_spotter(), "front_end": speech.make_front_end(),
            "asr": speech.make_transcriber()}


def measure(args: argparse.Namespace) -> dict:
    t_begin = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    turns = {"backchannel_s": args.backchannel_s, "resume_window_s": args.resume_window_s,
             "stop_gap_s": args.stop_gap_s}
    try:
        EngineConfig(**turns)
    except ValueError as e:
        raise SystemExit(f"bench turns: {e}") from None
    speech = load_speech(args)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown kinds {unknown}; choose from {list(KINDS)}")
    plan = [(kind, i, KINDS[kind][i % len(KINDS[kind])], (i + len(kind)) % len(VOICES))
            for kind in kinds for i in range(args.trials)]
    _log(f"synthesizing {len(plan)} user clips")
    clips: dict[tuple[str, int], data.Utterance] = {}
    for v in sorted({v for *_, v in plan}):
        texts = tuple(sorted({text for _, _, text, w in plan if w == v}))
        clips.update({(u.text, v): u for u in data.synthesize(texts, (VOICES[v],))})
    stats: dict[str, list] = {k: [] for k in ("takeover_bc", "takeover_int", "yield", "resume", "halt")}
    false_halts = false_halts_any = false_holds = stop_misses = false_cuts = not_speaking = 0
    holds: list[float] = []
    counts = {k: 0 for k in kinds}
    by_voice: dict[str, dict[str, int]] = {}
    for kind, i, text, v in plan:
        u = clips[(text, v)]
        measured = {k: len(xs) for k, xs in stats.items()}
        snr = NOISES[i % len(NOISES)]
        clip = data.add_noise(u, snr, rng)
        lead = 1.3 + 0.31 * (i % 5)            # onsets spread over the robot's sentence
        trial = Trial(speech, clip, lead, rng, turns)
        events = trial.run()
        onset, end = lead + u.start / RATE, lead + u.end / RATE
        if not trial.speaking_at(onset):
            not_speaking += 1
        cut = _first(events, ev.RobotSpeechCut, onset)
        pause = _first(events, ev.RobotSpeechPause, onset)
        halt = next((e for e in events if isinstance(e, ev.ActionHalt) and e.reason.startswith("stop_word")
                     and e.t >= onset), None)
        cancelled = any(isinstance(e, ev.ActionChunkCancelled) and e.reason.startswith("stop_word")
                        for e in events)
        released = [e for e in events if isinstance(e, ev.ActionRelease)]
        holds += [1000.0 * e.held_s for e in released]
        name = u.voice + ("" if snr is None else f"@{snr:g}dB")
        tally = by_voice.setdefault(u.voice, {"trials": 0, "wrong": 0})
        tally["trials"] += 1
        if kind == "backchannel":
            stats["takeover_bc"].append(cut is not None)
            false_cuts += cut is not None
            tally["wrong"] += cut is not None
            resume = _first(events, ev.RobotSpeechResume, onset)
            if pause is not None and resume is not None and cut is None:
                stats["resume"].append(1000.0 * (resume.t - end))
        elif kind == "interruption":
            stats["takeover_int"].append(cut is not None)
            tally["wrong"] += cut is None
            silent = min((e.t for e in (pause, cut) if e is not None), default=None)
            if silent is not None:
                stats["yield"].append(1000.0 * (silent - onset))
        elif kind == "command":
            false_halts += cancelled
            false_holds += bool(released)
            tally["wrong"] += cancelled
        if kind != "stop":
            false_halts_any += cancelled
        else:
            stop_misses += not cancelled
            tally["wrong"] += not cancelled
            if halt is not None and cancelled:
                stats["halt"].append(1000.0 * (halt.t - end))
        counts[kind] += 1
        ms = {"stop": "halt", "backchannel": "resume", "interruption": "yield"}.get(kind)
        took = f" {ms}_ms={stats[ms][-1]:.0f}" if ms and len(stats[ms]) > measured[ms] else ""
        _log(f"{kind} {i + 1}/{args.trials} {name}: {text!r}{took} cut={cut is not None} pause={pause is not None} "
             f"halt={halt.reason if halt is not None else None} cancelled={cancelled} "
             f"released={[e.heard for e in released]} "
             f"heard={[e.text for e in events if isinstance(e, ev.UserTranscript)]}")

    def rate(xs: list[bool]) -> float | None:
        return round(float(np.mean(xs)), 4) if xs else None
    return {
        "trials_per_kind": args.trials, "trials": counts,
        "backchannel_takeover_rate": rate(stats["takeover_bc"]),
        "interruption_takeover_rate": rate(stats["takeover_int"]),
        "yield_ms_p50": _pct(stats["yield"], 50), "yield_ms_p95": _pct(stats["yield"], 95),
        "resume_ms_p50": _pct(stats["resume"], 50), "resume_ms_p95": _pct(stats["resume"], 95),
        "false_halts": int(false_halts), "false_halts_any": int(false_halts_any), "stop_misses": int(stop_misses),
        "false_holds": int(false_holds), "holds_released": len(holds), "hold_ms_p95": _pct(holds, 95),
        "hold_ms_max": round(max(holds), 1) if holds else None,
        "halt_ms_p50": _pct(stats["halt"], 50), "halt_ms_p95": _pct(stats["halt"], 95),
        "backchannel_false_cuts": int(false_cuts), "robot_not_speaking_at_onset": not_speaking,
        "wrong_by_voice": by_voice, "clock": "stepped (audio time)",
        **turns, "stop_hold_s": EngineConfig.stop_hold_s,
        "wall_s": round(time.perf_counter() - t_begin, 1),
    }
