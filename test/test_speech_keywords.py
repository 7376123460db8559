"""Stop words with pocketsphinx keyword search, and command partials with its JSGF search."""
from functools import cache

import numpy as np
import pytest

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.policy import Decision, SteppedWorker
from ellsa_ros.speech import make_keyword_spotter
from ellsa_ros.speech.commands import CommandGrammarConfig, CommandListener
from ellsa_ros.speech.keywords import KeywordSpotterConfig
from ellsa_ros.speech.pcm import resample

RATE = 16000


@cache
def speech(text: str) -> np.ndarray:
    from ellsa_ros.speech.tts import HibariTTS
    tts = HibariTTS()
    return resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, RATE)


def padded(text: str) -> tuple[np.ndarray, int]:
    """(1 s silence + speech + 1 s silence, sample where the speech ends)."""
    s = speech(text)
    end = 8000 + int(np.nonzero(np.abs(s) > 0.02 * np.abs(s).max())[0][-1])
    return np.concatenate([np.zeros(8000, np.float32), s, np.zeros(RATE, np.float32)]), end


def heard(spotter, audio: np.ndarray, frame: int = 320) -> list[tuple[str, int]]:
    """(word, sample at the end of the frame that reported it)."""
    spotter.reset()
    return [(w, i + frame) for i in range(0, len(audio) - frame + 1, frame)
            for w in spotter.process(audio[i:i + frame])]


@pytest.fixture(scope="module")
def spotter():
    return make_keyword_spotter()


class _Silent:
    sample_rate = 16000

    def synthesize(self, text):
        yield np.zeros(160, np.float32)


class _Idle:
    def reset(self):
        pass

    def step(self, block):
        return Decision()


def test_the_engine_hears_stop_words_through_it_and_refuses_ones_it_does_not_spot(spotter):
    engine = DuplexEngine(SteppedWorker(_Idle()), ActionLimits.ee_delta(7), _Silent(), EngineConfig(cameras=()),
                          keywords=spotter)
    audio, end = padded("Stop!")
    heard = []
    engine.events.subscribe(lambda e: heard.append(e) if isinstance(e, ev.KeywordHeard) else None)
    for i in range(0, len(audio) - 319, 320):
        engine.push_audio(audio[i:i + 320], i / RATE)
    assert [e.word for e in heard] == ["stop"] and end / RATE < heard[0].t <= end / RATE + 0.4
    with pytest.raises(ValueError, match=r"stop_words \['freeze'\] are not spotted"):
        DuplexEngine(SteppedWorker(_Idle()), ActionLimits.ee_delta(7), _Silent(),
                     EngineConfig(cameras=(), stop_words=("stop", "freeze")), keywords=spotter)


@pytest.mark.parametrize("text", ["Stop!", "Wait."])
def test_stop_word_is_reported_shortly_after_it_ends(spotter, text):
    audio, end = padded(text)
    hits = heard(spotter, audio)
    assert hits, f"{text!r} was not heard"
    word, at = hits[0]
    assert word == text.strip(".!").lower()
    start = 8000 + int(np.nonzero(np.abs(speech(text)) > 0.02 * np.abs(speech(text)).max())[0][0])
    assert start + 0.1 * RATE <= at                # not before the word has been under way
    assert at <= end + 0.2 * RATE                  # within 200 ms of the word's end (20 ms frames)


def test_digital_silence_and_broken_frames_report_nothing(spotter):
    spotter.reset()
    frames = [np.zeros(320, np.float32)] * 150 + [np.full(320, np.nan, np.float32), np.ones(320, np.float32)]
    assert [w for f in frames for w in spotter.process(f)] == []


def test_a_word_outside_the_dictionary_needs_its_phones():
    with pytest.raises(ValueError, match="robotstopnow.*pronunciations"):
        make_keyword_spotter(words=("robotstopnow",))
    custom = make_keyword_spotter(words=("freeze",), pronunciations={"freeze": ("F R IY Z",)})
    audio, _ = padded("Freeze!")
    assert [w for w, _ in heard(custom, audio)] == ["freeze"]


@pytest.mark.parametrize("bad", [dict(words=()), dict(words=("two words",)), dict(thresholds={"stop": 2.0}),
                                 dict(sample_rate=8000), dict(kws_delay_frames=0)])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        KeywordSpotterConfig(**bad)


def test_command_partials_grow_while_the_user_speaks_and_end_in_the_command():
    listener = CommandListener()
    audio = speech("Pick up the black bowl.")
    partials = [p for i in range(0, len(audio) - 319, 320) if (p := listener.process(audio[i:i + 320]))]
    assert len(partials) >= 3 and partials[0] != partials[-1]
    assert listener.finish() == "pick up the black bowl"
    audio = speech("Close the microwave.")
    for i in range(0, len(audio) - 319, 320):
        listener.process(audio[i:i + 320])
    assert listener.finish() == "close the microwave"         # finish() started a fresh segment


def test_command_grammar_takes_the_tasks_objects_and_refuses_unknown_words():
    config = CommandGrammarConfig(objects=("ketchup", "basket"))
    assert "ketchup | basket" in config.jsgf()
    with pytest.raises(ValueError, match="xqzzy"):
        CommandListener(CommandGrammarConfig(objects=("xqzzy",)))
    with pytest.raises(ValueError, match="objects"):
        CommandGrammarConfig(objects=("Black Bowl!",))
