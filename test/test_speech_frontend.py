"""The listening front end in a noisy room: its filter, the segmentation of real speech by the
silero VAD and the reflex, the Whisper guards, and one front end for the runtime and the data
engine. A few synthesized utterances only (hibari, which Whisper transcribes well)."""
from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from runtime_doubles import ScriptedPolicy, ToneTTS

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.clock import SteppedClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.hearing import FrontEnd, Unintelligible
from ellsa_ros.runtime.listening import ASK_AGAIN, ListeningPolicy
from ellsa_ros.runtime.loop import SteppedLoop
from ellsa_ros.runtime.policy import Decision, SteppedWorker
from ellsa_ros.runtime.reflex import Reflex
from ellsa_ros.sim.datagen.hearing import hand_overs
from ellsa_ros.speech import make_front_end, make_transcriber, make_vad
from ellsa_ros.speech.asr import runaway
from ellsa_ros.speech.frontend import FrontEndConfig
from ellsa_ros.speech.pcm import resample

RATE = 16000


@cache
def speech(text: str) -> np.ndarray:
    from ellsa_ros.speech.tts import HibariTTS
    tts = HibariTTS()
    audio = resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, RATE)
    loud = np.nonzero(np.abs(audio) > 0.02 * np.abs(audio).max())[0]
    audio = audio[loud[0]:loud[-1] + 1]
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def motor_hum(seconds: float, rms: float, seed: int = 0, f0: float = 120.0) -> np.ndarray:
    """A motor's hum with harmonics over low-passed noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k for k in (1, 2, 3, 4, 5))
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(1 + (np.fft.rfftfreq(n, 1 / RATE) / 300.0) ** 4)
    x = x / np.std(x) + 0.7 * np.fft.irfft(spectrum, n) / np.std(np.fft.irfft(spectrum, n))
    return (rms * x / np.std(x)).astype(np.float32)


def in_room(parts: list[np.ndarray | float], hum_rms: float = 0.02, lead_s: float = 1.0, tail_s: float = 1.5):
    """Speech parts (arrays) and pauses (seconds) over motor hum; returns the microphone."""
    pieces = [np.zeros(int(lead_s * RATE), np.float32)]
    for p in parts:
        pieces.append(p if isinstance(p, np.ndarray) else np.zeros(int(p * RATE), np.float32))
    pieces.append(np.zeros(int(tail_s * RATE), np.float32))
    clean = np.concatenate(pieces)
    return np.clip(clean + motor_hum(len(clean) / RATE, hum_rms), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def vad():
    return make_vad("silero")


@pytest.fixture(scope="module")
def asr():
    return make_transcriber()


def test_the_front_end_removes_hum_and_dc_keeps_speech_and_streams_per_frame():
    room = make_front_end()
    assert isinstance(room, FrontEnd)
    t = np.arange(2 * RATE) / RATE

    def gain_db(x):
        room.reset()
        y = np.concatenate([room.process(x[i:i + 320]) for i in range(0, len(x), 320)])
        return 20 * np.log10(np.std(y[RATE:]) / np.std(x[RATE:]))

    assert gain_db(0.3 * np.sin(2 * np.pi * 30 * t)) < -30        # rumble
    assert gain_db(0.3 * np.sin(2 * np.pi * 50 * t)) < -15        # mains
    assert gain_db(0.3 * np.sin(2 * np.pi * 1000 * t)) > -0.5     # the speech band
    room.reset()
    dc = np.concatenate([room.process(np.full(320, 0.4, np.float32)) for _ in range(100)])
    assert abs(dc[-3200:]).max() < 1e-3
    # frame size does not change the output: the state carries over
    x = motor_hum(1.0, 0.1)
    room.reset()
    a = np.concatenate([room.process(x[i:i + 320]) for i in range(0, len(x), 320)])
    room.reset()
    b = np.concatenate([room.process(x[i:i + 512]) for i in range(0, len(x), 512)])
    np.testing.assert_allclose(a, b[:len(a)], atol=1e-6)
    with pytest.raises(ValueError, match="highpass_hz"):
        FrontEndConfig(highpass_hz=-1.0)
    with pytest.raises(ValueError, match="join_pause_s"):
        FrontEndConfig(join_pause_s=-0.5)


@pytest.mark.parametrize("f0, rms", [(120.0, 0.05), (60.0, 0.1), (100.0, 0.02)])
def test_hum_alone_never_opens_an_utterance(vad, f0, rms):
    mic = motor_hum(12.0, rms, seed=int(f0), f0=f0)
    ear = Reflex(vad, None, None, RATE, make_front_end())
    started = [i for i in range(len(mic) // 320) if ear.hear(mic[i * 320:(i + 1) * 320], False).speech_started]
    assert started == []                  # not even from the first frame of a stream in a humming room
    assert list(hand_overs(mic, RATE, vad, make_front_end())) == []


def test_a_paused_instruction_stays_one_utterance(vad, asr):
    mic = in_room([speech("Put the bowl"), 0.8, speech("on the plate.")])
    got = list(hand_overs(mic, RATE, vad, make_front_end()))
    assert len(got) == 1
    text = asr.transcribe(got[0].audio, prompt="black bowl, plate")
    words = set(text.lower().replace(".", " ").replace(",", " ").split())
    assert {"bowl", "plate"} <= words
    # a pause longer than the join window is two instructions
    far = in_room([speech("Put the bowl"), 2.5, speech("on the plate.")])
    assert len(list(hand_overs(far, RATE, vad, make_front_end()))) == 2


def test_an_utterance_starts_where_speech_starts_not_at_a_burst_before_it(vad):
    rng = np.random.default_rng(3)
    burst = (0.3 * rng.standard_normal(int(0.06 * RATE))).astype(np.float32)   # a knock
    words = speech("Open the top drawer.")
    mic = in_room([burst, 0.5, words])
    got = list(hand_overs(mic, RATE, vad, make_front_end()))
    assert len(got) == 1
    start_s = got[0].start_s
    speech_start_s = 1.0 + len(burst) / RATE + 0.5
    assert speech_start_s - 0.5 <= start_s <= speech_start_s     # the preroll before it, not the knock


def test_a_runaway_transcript_is_recognized():
    assert runaway("turn off, " * 75, 3.0, 4.5, 3) is not None
    assert "repeated" in runaway("put the put the put the bowl", 3.0, 4.5, 3)
    assert "words in" in runaway("pick up the bowl and put it on the plate now please", 1.0, 4.5, 3)
    assert runaway("no, no, no, put the bowl on the plate", 3.0, 4.5, 3) is None
    assert runaway("pick up the ketchup and place it in the basket", 3.0, 4.5, 3) is None


def test_a_decoding_past_the_bound_is_retried_then_refused_and_never_acted_on():
    # A bound no real transcript can meet: every decoding "runs away", so the real model's
    # retry path runs and the utterance is refused with the reason.
    strict = make_transcriber(max_words_per_s=0.2)
    audio = speech("Move the cream cheese to the basket.")
    with pytest.raises(Unintelligible, match="decoded again"):
        strict.transcribe(audio)
    inner = ScriptedPolicy(lambda b: Decision(actions=np.zeros((4, 7), np.float32)) if b.heard else Decision())
    listening = ListeningPolicy(inner, strict)
    block = Block(index=0, t_start=0.0, t_end=1.0, audio=np.zeros(0, np.float32), sample_rate=RATE,
                  images={}, image_stamps={}, state=None, state_stamp=None, utterances=[audio])
    d = listening.step(block)
    assert inner.blocks[0].heard == "" and d.actions is None
    assert d.say == ASK_AGAIN and len(d.refused) == 1 and "words in" in d.refused[0]


def test_the_engine_announces_a_refused_utterance():
    class Refusing:
        def transcribe(self, audio, prompt=""):
            raise Unintelligible("'turn off' repeated 3+ times")

    policy = ListeningPolicy(ScriptedPolicy(lambda b: Decision()), Refusing())
    engine = DuplexEngine(SteppedWorker(policy), ActionLimits.ee_delta(7), ToneTTS(), EngineConfig(block_s=0.5),
                          vad=make_vad("silero"), front_end=make_front_end())
    log = ev.EventLog()
    engine.events.subscribe(log)
    mic = in_room([speech("Close the microwave.")])
    loop = SteppedLoop(engine, SteppedClock(), mic=lambda t0, n: mic[int(t0 * RATE):int(t0 * RATE) + n])
    engine.start(0.0)
    loop.run_until(len(mic) / RATE - 0.05)
    refused = [e for e in log.events if isinstance(e, ev.UtteranceRefused)]
    assert len(refused) == 1 and "turn off" in refused[0].reason
    assert not [e for e in log.events if isinstance(e, ev.UserTranscript)]
    assert any(isinstance(e, ev.RobotSpeechStart) and e.text == ASK_AGAIN for e in log.events)


def test_the_runtime_and_the_data_engine_hear_through_the_same_front_end(vad):
    mic = in_room([speech("Pick up the black bowl"), 0.7, speech("and put it on the plate.")], hum_rms=0.03)
    room = make_front_end()
    heard = ScriptedPolicy(lambda b: Decision())
    engine = DuplexEngine(SteppedWorker(heard), ActionLimits.ee_delta(7), ToneTTS(), EngineConfig(block_s=0.5),
                          vad=vad, front_end=room)
    assert engine.reflex.front_end is room
    loop = SteppedLoop(engine, SteppedClock(), mic=lambda t0, n: mic[int(t0 * RATE):int(t0 * RATE) + n])
    engine.start(0.0)
    loop.run_until(len(mic) / RATE - 0.05)
    runtime = [u for b in heard.blocks for u in b.utterances]
    datagen = [u.audio for u in hand_overs(mic, RATE, vad, room)]
    assert len(runtime) == len(datagen) == 1
    np.testing.assert_array_equal(runtime[0], datagen[0])


@pytest.mark.parametrize("damage", ["clipped", "dc_offset", "silent", "upsampled_8k"])
def test_broken_audio_is_transcribed_or_refused_never_a_crash(vad, asr, damage):
    mic = in_room([speech("Pick up the alphabet soup.")])
    mic = {"clipped": lambda x: np.clip(8 * x, -1, 1), "dc_offset": lambda x: np.clip(x + 0.3, -1, 1),
           "silent": np.zeros_like,
           "upsampled_8k": lambda x: resample(resample(x, RATE, 8000), 8000, RATE)[:len(x)]}[damage](mic)
    got = list(hand_overs(mic.astype(np.float32), RATE, vad, make_front_end()))
    if damage == "silent":
        assert got == []
        return
    assert len(got) == 1
    try:
        text = asr.transcribe(got[0].audio, prompt="alphabet soup").lower()
    except Unintelligible as e:
        assert e.reason
    else:
        assert "soup" in text


def test_the_task_scene_names_its_objects_for_the_listener():
    from ellsa_ros.sim.suites import scene_vocabulary, task_spec
    words = scene_vocabulary(task_spec("libero_object", 1))
    assert {"cream cheese", "basket", "milk"} <= set(words)
    assert not [w for w in words if "table" in w or "_" in w]
    prompts = []

    class Recording:
        def transcribe(self, audio, prompt=""):
            prompts.append(prompt)
            return "put the milk in the basket"

    listening = ListeningPolicy(ScriptedPolicy(lambda b: Decision()), Recording())
    listening.listen_for(words)
    block = Block(index=0, t_start=0.0, t_end=1.0, audio=np.zeros(0, np.float32), sample_rate=RATE,
                  images={}, image_stamps={}, state=None, state_stamp=None, utterances=[np.zeros(RATE, np.float32)])
    assert listening.step(block).heard == "put the milk in the basket"
    assert "cream cheese" in prompts[0] and "basket" in prompts[0]
