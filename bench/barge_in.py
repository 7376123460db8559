"""`ellsa bench barge-in`: how fast the robot yields when a person talks over it.

Every trial runs the engine on the wall clock with the real speech stack (silero VAD,
pocketsphinx keyword spotting, a real TTS for the robot's voice) while the robot speaks and
acts. The user's audio comes from WAV files synthesized with espeak-ng, fed frame by frame at
real-time pace from a separate thread, as a microphone would. Three kinds of trial:

- barge-in: the user talks over the robot: onset -> voice ducked, onset -> voice cut;
- stop word: the user says a stop word: end of the word -> action halt;
- backchannel: the user says "mm-hmm" and the like: the voice must not be cut.

Also counted: `false_halts`, barge-in sentences (no stop word in them) that halted the arm.

Onsets and word ends come from the clean WAV (first/last sample above 5% of its peak).
The robot's own voice does not reach the microphone here (no loudspeaker path), so this
measures the reflexes, not echo handling (`ellsa bench speech` measures that).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.clock import RateScheduler, WallClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.policy import Decision, ThreadedWorker
from ellsa_ros.runtime.speech_out import resample

SR = 16000
BARGE = ["excuse me, put it in the basket instead", "sorry, what are you holding right now",
         "no no, the other bowl please", "can you tell me where the plate is",
         "hold on, I changed my mind"]
STOPS = ["stop", "wait", "halt", "pause"]
BACKCHANNELS = ["mm-hmm", "uh-huh", "okay", "yeah", "right"]
ROBOT_SAYS = ("I am picking up the black bowl between the plate and the ramekin, and I will place it on "
              "the plate next to the cookie box, then I will wait for your next instruction.")


class TalkAndAct:
    """Speaks a long sentence and starts a long chunk (`n` actions) on the first block."""

    def __init__(self, say: str = ROBOT_SAYS, n: int = 200) -> None:
        self.say, self.n = say, n

    def reset(self) -> None:
        pass

    def step(self, block) -> Decision:
        if block.index == 0:
            a = np.zeros((self.n, 7), np.float32)
            a[:, 0] = 0.05
            return Decision(actions=a, say=self.say)
        return Decision()


def synthesize(text: str, folder: Path, index: int) -> tuple[Path, np.ndarray]:
    path = folder / f"user_{index:03d}.wav"
    voices = ["en-us", "en-gb", "en-us+f3", "en-us+m3"]
    subprocess.run(["espeak-ng", "-v", voices[index % len(voices)], "-s", str(150 + 10 * (index % 4)),
                    "-w", str(path), text], check=True, capture_output=True)
    audio, sr = sf.read(path, dtype="float32")
    audio = resample(audio, sr, SR)
    sf.write(path, audio, SR)
    return path, audio


def speech_bounds(audio: np.ndarray) -> tuple[float, float]:
    idx = np.flatnonzero(np.abs(audio) > 0.05 * np.abs(audio).max())
    return idx[0] / SR, (idx[-1] + 1) / SR


def run_trial(wav: Path, lead_s: float, speech, backchannel_s: float) -> tuple[list[ev.Event], float, float, bool]:
    """Plays `wav` into a fresh engine `lead_s` after start; returns events and the wall times of
    the user's speech onset and end, and whether the robot was speaking at the onset."""
    clip, _ = sf.read(wav, dtype="float32")
    on_s, off_s = speech_bounds(clip)
    rng = np.random.default_rng(len(clip))
    mic = np.concatenate([np.zeros(int(lead_s * SR), np.float32), clip, np.zeros(SR, np.float32)])
    mic = mic + (0.002 * rng.standard_normal(len(mic))).astype(np.float32)
    clock = WallClock()
    cfg = EngineConfig(block_s=0.16, max_age_s={"camera": 1.0, "state": 1.0, "audio": 1.0}, cameras=(),
                       backchannel_s=backchannel_s)
    worker = ThreadedWorker(TalkAndAct())
    worker.bind_clock(clock.now)
    engine = DuplexEngine(worker, ActionLimits.ee_delta(7), speech["tts"], cfg, vad=speech["vad"](),
                          keywords=speech["keywords"](), echo=None)
    log = ev.EventLog()
    engine.events.subscribe(log)
    n = cfg.frame_samples
    t0 = clock.now()
    engine.push_state(np.zeros(7), t0)
    engine.start(t0)
    speaking_at_onset = []

    def microphone() -> None:
        sched = RateScheduler(clock, SR / n)
        sched.start(t0 + n / SR)
        for i in range(len(mic) // n):
            tick = sched.wait()      # the frame's last sample has just arrived
            if abs(i * n / SR - (lead_s + on_s)) < n / SR / 2:
                speaking_at_onset.append(engine.speech.speaking)
            engine.push_audio(mic[i * n:(i + 1) * n], tick.now - n / SR)

    feeder = threading.Thread(target=microphone, daemon=True)
    feeder.start()
    sched = RateScheduler(clock, cfg.control_hz)
    sched.start(t0)
    while feeder.is_alive():
        tick = sched.wait()
        engine.push_state(np.zeros(7), tick.now)
        engine.tick(tick.now)
    engine.close()
    return log.events, t0 + lead_s + on_s, t0 + lead_s + off_s, bool(speaking_at_onset and speaking_at_onset[0])


def first(events, etype, after: float):
    return next((e for e in events if isinstance(e, etype) and e.t >= after - 0.05), None)


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=20, help="trials of each kind (barge-in, stop word, backchannel)")
    parser.add_argument("--kinds", default="barge,stop,backchannel", help="which kinds of trial to run")
    parser.add_argument("--vad", default="silero", help="VAD backend of ellsa_ros.speech")
    parser.add_argument("--tts", default="hibari", help="TTS backend for the robot's voice")
    parser.add_argument("--backchannel-s", type=float, default=EngineConfig.backchannel_s,
                        help="user speech still voiced this long after onset cuts the robot's voice")


def load_speech(args: argparse.Namespace) -> dict:
    try:
        from ellsa_ros import speech
    except ImportError as e:
        raise SystemExit(f"ellsa bench barge-in needs the speech stack (ellsa_ros.speech): {e}") from e
    return {"tts": speech.make_tts(args.tts), "vad": lambda: speech.make_vad(args.vad),
            "keywords": lambda: speech.make_keyword_spotter(words=STOPS)}


def measure(args: argparse.Namespace) -> dict:
    speech = load_speech(args)
    duck, cut, halt, false_cuts, false_halts, not_speaking = [], [], [], 0, 0, 0
    missed = {"duck": 0, "cut": 0, "halt": 0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = [("barge", BARGE), ("stop", STOPS), ("backchannel", BACKCHANNELS)]
        kinds = [(k, t) for k, t in kinds if k in args.kinds.split(",")]
        for kind, texts in kinds:
            for i in range(args.trials):
                wav, _ = synthesize(texts[i % len(texts)], folder, i)
                lead = 1.2 + 0.37 * (i % 5)   # onsets spread over the robot's sentence
                events, onset, end, speaking = run_trial(wav, lead, speech, args.backchannel_s)
                if not speaking:
                    not_speaking += 1
                d, c = first(events, ev.RobotSpeechDuck, onset), first(events, ev.RobotSpeechCut, onset)
                if kind == "barge":
                    false_halts += first(events, ev.ActionHalt, 0.0) is not None   # no stop word was said
                    if d is None:
                        missed["duck"] += 1
                    else:
                        duck.append(1000 * (d.t - onset))
                    if c is None:
                        missed["cut"] += 1
                    else:
                        cut.append(1000 * (c.t - onset))
                elif kind == "stop":
                    h = first(events, ev.ActionHalt, end - 0.3)
                    if h is None:
                        missed["halt"] += 1
                    else:
                        halt.append(1000 * (h.t - end))
                else:
                    false_cuts += c is not None
                print(f"[bench barge-in] {kind} {i + 1}/{args.trials}", file=sys.stderr)
    return {
        "trials": args.trials * len(kinds),
        "duck_ms_p50": pct(duck, 50), "duck_ms_p95": pct(duck, 95),
        "cut_ms_p50": pct(cut, 50), "cut_ms_p95": pct(cut, 95),
        "halt_ms_p50": pct(halt, 50), "halt_ms_p95": pct(halt, 95),
        "backchannel_false_cuts": int(false_cuts),
        "false_halts": int(false_halts),
        "missed": missed, "robot_not_speaking_at_onset": not_speaking,
        "vad": args.vad, "tts": args.tts, "backchannel_s": args.backchannel_s,
    }
