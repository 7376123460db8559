"""Streaming partial results for a small spoken command grammar (pocketsphinx JSGF search).

While the user speaks, `CommandListener.process` returns the growing hypothesis ("pick up",
"pick up the black bowl", ...) so the robot can show what it heard and prepare before the
accurate transcript arrives. The grammar is built from the task's verbs and object names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ellsa_ros.speech import integrity
from ellsa_ros.speech.keywords import STOP_WORDS, cmu_pronunciations
from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, check_rate, clean_frame, to_int16

DEFAULT_VERBS = ("pick up", "put", "place", "open", "close", "move", "turn on", "turn off", "push", "pull")
DEFAULT_OBJECTS = ("black bowl", "bowl", "plate", "top drawer", "drawer", "microwave", "cream cheese",
                   "basket", "stove", "it")
PREPOSITIONS = ("on", "in", "to", "into", "onto")
_WORD = re.compile(r"^[a-z']+( [a-z']+)*$")


@dataclass
class CommandGrammarConfig:
    verbs: tuple[str, ...] = DEFAULT_VERBS
    objects: tuple[str, ...] = DEFAULT_OBJECTS      # object names of the task, lower case
    stop_words: tuple[str, ...] = STOP_WORDS
    dither_rms: float = 0.003
    sample_rate: int = ENGINE_RATE_HZ

    def __post_init__(self) -> None:
        for kind, phrases in (("verbs", self.verbs), ("objects", self.objects), ("stop_words", self.stop_words)):
            bad = [p for p in phrases if not _WORD.match(p)]
            if not phrases or bad:
                raise ValueError(f"{kind} must be non-empty lower-case phrases of letters, got bad entries {bad}")
        check_rate(self.sample_rate, "CommandGrammarConfig")

    def jsgf(self) -> str:
        objects = " | ".join(self.objects)
        return ("#JSGF V1.0;\ngrammar commands;\n"
                "public <command> = [please] ( <stop> | <act> [<object>] [<where>] );\n"
                f"<stop> = {' | '.join(self.stop_words)};\n"
                f"<act> = {' | '.join(self.verbs)};\n"
                f"<object> = [the] ( {objects} );\n"
                f"<where> = ( {' | '.join(PREPOSITIONS)} ) [the] ( {objects} );\n")

    def vocabulary(self) -> set[str]:
        phrases = self.verbs + self.objects + self.stop_words + PREPOSITIONS + ("please", "the")
        return {w for p in phrases for w in p.split()}


class CommandListener:
    """Called per frame while the VAD says the user speaks; `finish` when the segment ends."""

    def __init__(self, config: CommandGrammarConfig | None = None) -> None:
        from pocketsphinx import Decoder
        self.config = c = config or CommandGrammarConfig()
        model = integrity.verify("pocketsphinx") / "model" / "en-us"
        known = cmu_pronunciations(model / "cmudict-en-us.dict", c.vocabulary())
        unknown = sorted(c.vocabulary() - set(known))
        if unknown:
            raise ValueError(f"command words {unknown} are not in the CMU dictionary; rename them in the grammar")
        self._decoder = Decoder(hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"), lm=None,
                                samprate=c.sample_rate, loglevel="FATAL")
        self._decoder.add_jsgf_string("commands", c.jsgf())
        self._decoder.activate_search("commands")
        self._rng = np.random.default_rng(0)
        self._partial = ""
        self._decoder.start_utt()
        self._open = True

    def process(self, frame: np.ndarray) -> str | None:
        """Feeds one frame; returns the hypothesis when it changed, else None."""
        x = clean_frame(frame, "command listener frame")
        if self.config.dither_rms > 0:
            x = x + self._rng.normal(0.0, self.config.dither_rms, len(x)).astype(np.float32)
        self._decoder.process_raw(to_int16(x).tobytes(), False, False)
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if text and text != self._partial:
            self._partial = text
            return text
        return None

    def finish(self) -> str:
        """Ends the segment; returns the final hypothesis ("" if nothing in the grammar matched)."""
        self._decoder.end_utt()
        self._open = False
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        self.reset()
        return text

    def reset(self) -> None:
        """Drops the segment heard so far (also called by `finish`)."""
        self._partial = ""
        if self._open:
            self._decoder.end_utt()
        self._decoder.start_utt()
        self._open = True
