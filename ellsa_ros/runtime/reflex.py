"""The reflex path: run on every audio frame, no model, so barge-in takes tens of ms.

Turn-taking, while the robot speaks:
- the user starts speaking -> the robot's voice ducks at once;
- the user is still speaking a backchannel length (`backchannel_s`) after onset -> the voice
  pauses, keeping its place (the engine goes back to the start of the word being said);
- the user's speech ends within the resume window (`resume_window_s` after onset) and was no
  stop word -> a backchannel ("mm-hmm", "okay"): the voice resumes where it paused, once the
  user has been quiet `RESUME_QUIET_S`;
- the user is still speaking at the end of the resume window -> an interruption: the pause
  becomes a cut, and the model sees it in its next block.
A short sound that ends before the backchannel length only ducks the voice.

Stop words mean stop only as the word said, not as a sound inside other words ("wait" in
"plate", "stop" in "stopper"): a spotted stop word is a candidate when it comes within
`stop_window_s` of its stretch of speech's onset; it is recognized once the user has been
quiet for `stop_gap_s` after it (a voice still going past the window, as in "put the stopper in
the bottle", drops it).
Then the arm holds at the next control tick and the voice pauses (`Reflexes.halt`); the engine
halts for good, or releases the hold, once the utterance's transcript is in (see `engine`): the
spotter alone cannot tell a short word said alone from a stop word ("right" heard as "stop").
The engine is told whether the word was said alone (`Reflexes.stop_alone`: nothing voiced after
it, and not the end of a longer utterance as "plate" is of "place it on the... plate"): a word
said alone is a stop unless its transcript is a backchannel; otherwise a sentence's transcript
releases the hold and the plan goes on, so the sounds of an instruction never cancel it.
Other words reach the model as text.

Segmentation, with a listening front end (`hearing.FrontEnd`), follows the VAD but is not
its copy: an utterance whose voiced part is shorter than the front end's `min_voiced_s` (a
knock, a noise burst the VAD opened on) is dropped; a pause shorter than its `join_pause_s`
("put the bowl... on the plate") does not end the instruction, so the utterance is handed
over only once the pause has outlasted it (a recognized stop word is handed over as its speech
ends: its transcript judges the hold, and nothing is joined to "stop"); the audio before the
first voiced frame (less the preroll) and the pause waited for after the last are cut off, so an utterance starts where
speech starts, not where noise opened the VAD. The turn-taking and stop rules see the VAD's
own start and end, unchanged.

`Reflex.hear` returns `Reflexes` (what to do); the engine applies them and emits events, so
this file holds the rules and nothing else.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .hearing import VAD, FrontEnd, KeywordSpotter

DEFAULT_STOP_WORDS = ("stop", "wait", "pause", "halt")
# Voice after a recognized stop word that still leaves it said alone (a breath, its own echo);
# more is the user talking on, and the transcript decides.
STOP_TAIL_S = 0.25
# A stop word is at least this much voiced sound (a fast "Stop." about 0.15 s); less is a knock
# or a burst of noise the spotter matched.
STOP_MIN_VOICED_S = 0.1
# The spotter reports a word at most this long after its last voiced sound (its search waits a
# few frames for a better-scoring end); a report later than that matched the quiet after a
# word, not the word.
STOP_LATE_S = 0.2
# A paused voice resumes once the user has been quiet this long (the VAD's own end of speech
# comes ~0.3 s later, after its hangover); by then the spotter has reported any stop word in
# what was said (`STOP_LATE_S`). Talking on pauses the voice again, and past the resume window
# cuts it.
RESUME_QUIET_S = 0.2


@dataclass
class ReflexConfig:
    """The turn-taking and stop fields are left out of `repr`: they decide no utterance's cut,
    and the repr is what a stored transcript records of the listener that made it."""
    # user speech still voiced this long after onset pauses the robot's voice
    backchannel_s: float = field(default=0.1, repr=False)
    # a paused voice resumes if the user's speech ended before this long after its onset; speech
    # still voiced then turns the pause into a cut
    resume_window_s: float = field(default=1.0, repr=False)
    stop_words: tuple[str, ...] = field(default=DEFAULT_STOP_WORDS, repr=False)
    preroll_s: float = 0.3         # audio kept before a VAD onset, so ASR hears the first phoneme
    max_utterance_s: float = 30.0  # an utterance longer than this is cut into pieces
    # A stop word is a candidate only this soon after the onset of the stretch of speech it is in:
    # "stop!" and "wait, ..." halt, while "wait" heard inside "...on the plate" does not.
    # Later stop words still reach the model as text, which decides in its next block.
    stop_window_s: float = field(default=0.8, repr=False)
    # quiet this long after a candidate stop word: it stood alone, and is recognized (shorter
    # gaps come between the words of a sentence: "place it | on the plate")
    stop_gap_s: float = field(default=0.15, repr=False)
    # "Still talking" also needs the frame within this many dB of the utterance's loudest frame:
    # a model VAD's probability decays over a window or two after the last word, the level at once.
    sustain_db: float = 20.0

    def __post_init__(self) -> None:
        if not (0.0 < self.backchannel_s <= 2.0):
            raise ValueError(f"backchannel_s={self.backchannel_s} must be in (0, 2] s")
        if not (self.backchannel_s < self.resume_window_s <= 5.0):
            raise ValueError(f"resume_window_s={self.resume_window_s} must be longer than backchannel_s="
                             f"{self.backchannel_s} (the voice pauses at the backchannel length; only later can "
                             f"the pause turn into a cut) and at most 5 s")
        if not (0.0 < self.stop_window_s <= 3.0):
            raise ValueError(f"stop_window_s={self.stop_window_s} must be in (0, 3] s")
        if not (0.0 < self.stop_gap_s <= 0.5):
            raise ValueError(f"stop_gap_s={self.stop_gap_s} must be in (0, 0.5] s")
        self.stop_words = tuple(w.strip().lower() for w in self.stop_words if w.strip())


def spoken_words(text: str) -> list[str]:
    """A transcript or a scripted line as lower-case words, punctuation dropped."""
    return re.findall(r"[a-z']+", text.lower())


def stop_phrase(text: str, length_s: float, stop_words: tuple[str, ...] = ReflexConfig.stop_words,
                window_s: float = ReflexConfig.stop_window_s) -> str | None:
    """The stop word the reflex recognizes in an utterance known by its text and length (the data
    engine's utterances): one that starts it, when it is over within the stop window ("stop",
    "wait a second"); None for a stop word in a longer phrase, which is words for the model."""
    words = spoken_words(text)
    return words[0] if words and words[0] in stop_words and length_s <= window_s + 1e-9 else None


@dataclass
class _StopCandidate:
    word: str                      # what the spotter reported
    joined: bool                   # its stretch of speech continues an utterance (a pause inside it)


@dataclass
class Reflexes:
    """What one audio frame asks for. Times are engine clock seconds."""
    speech_started: bool = False
    speech_ended: bool = False            # the VAD's end of speech (the utterance may go on after a pause)
    utterance: np.ndarray | None = None   # a finished utterance, handed over on this frame
    utterance_lag_s: float = 0.0          # audio between the utterance's end and this frame's end
    duck: bool = False
    unduck: bool = False
    pause: bool = False                   # the robot's voice holds its place until resumed or cut
    resume: bool = False                  # a backchannel: the paused voice plays on
    cut: str | None = None                # reason, when the robot's voice must stop
    halt: str | None = None               # stop word, when the actions must hold (the engine judges it)
    keywords: list[str] = field(default_factory=list)   # words recognized on this frame
    # with an utterance that carried a recognized stop word: True if nothing was voiced after the
    # word (it was said alone), False if the user talked on in the same stretch of speech
    stop_alone: bool | None = None
    stop_voiced_s: float = 0.0            # ... and how long its stretch of speech was voiced


class Reflex:
    """`front_end`, when given, filters every frame before the VAD, the keyword spotter and the
    utterance buffer see it, and decides the segmentation (the same object wherever audio is
    heard: the engine, the data engine's heard-text pass, the benchmarks)."""

    def __init__(self, vad: VAD, keywords: KeywordSpotter | None = None,
                 config: ReflexConfig | None = None, sample_rate: int = 16000,
                 front_end: FrontEnd | None = None) -> None:
        self.vad = vad
        self.keywords = keywords
        self.config = config or ReflexConfig()
        self.sample_rate = sample_rate
        self.front_end = front_end
        fe = front_end
        if fe is not None and not (fe.min_voiced_s >= 0 and fe.join_pause_s >= 0):
            raise ValueError(f"front end: min_voiced_s={fe.min_voiced_s} and join_pause_s={fe.join_pause_s} "
                             f"must be >= 0 s")
        self._min_voiced_n = 0.0 if fe is None else fe.min_voiced_s * sample_rate
        self._join_n = 0.0 if fe is None else fe.join_pause_s * sample_rate
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        if self.front_end is not None:
            self.front_end.reset()
        if self.keywords is not None:
            self.keywords.reset()
        self.speaking = False
        self._speech_s = 0.0
        self._since_onset_s = np.inf   # audio time since the onset of the current or last utterance
        self._peak_db = -np.inf        # loudest frame of the current utterance, dBFS
        self._ducked = False
        self._cut = False              # this stretch of speech has paused or cut the voice already
        self._paused = False           # the voice is paused, waiting for this stretch of speech to end
        self._quiet_s = 0.0            # audio since the user was last still voiced
        self._stop: _StopCandidate | None = None
        self._stop_said = False        # this utterance is a recognized stop word: hand it over at its end
        self._after_stop_s = 0.0       # voiced audio after the recognized stop word, in its stretch
        self._stop_voiced_s = 0.0      # its stretch's voiced length, onset to the word's end
        self._stop_joined = False      # ... whose stretch continued an utterance
        self._joined = False           # the current stretch of speech continues an utterance
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_n = 0
        self._utterance: list[np.ndarray] = []
        self._utterance_n = 0
        self._voiced_n = 0             # samples of the utterance in frames the VAD found voiced
        self._first_voiced: int | None = None   # index in `_utterance` of its first voiced frame
        self._pause_n: int | None = None        # samples since the VAD ended an utterance not yet handed over
        self._spoken = 0               # frames of `_utterance` up to the VAD's last end of speech
        self.dropped = 0               # utterances dropped as too little voiced
        self.last_speech_s = 0.0       # how long the VAD's last stretch of speech lasted

    def hear(self, frame: np.ndarray, robot_speaking: bool) -> Reflexes:
        """Called once per (echo-cleaned) microphone frame, in order. `robot_speaking`: the
        robot's voice is playing or paused (it holds the turn)."""
        c = self.config
        out = Reflexes()
        if self.front_end is not None:
            frame = self.front_end.process(frame)
        dt = len(frame) / self.sample_rate
        self.vad.far_end = robot_speaking
        voiced = bool(self.vad.is_speech(frame))
        self._since_onset_s += dt
        heard = [] if self.keywords is None else [w.lower() for w in self.keywords.process(frame)]
        if not robot_speaking:
            self._paused = False      # cut or finished elsewhere: nothing left to resume

        if voiced and not self.speaking:
            self.speaking, self._speech_s, self._cut = True, 0.0, False
            self._since_onset_s = dt
            self._peak_db = -np.inf
            out.speech_started = True
            self._joined = self._pause_n is not None and self._voiced_n >= self._min_voiced_n
            if not self._joined:
                # a new utterance (a burst too short to be speech before it is dropped)
                if self._pause_n is not None:
                    self.dropped += 1
                self._utterance, self._utterance_n = list(self._preroll), self._preroll_n
                self._voiced_n, self._first_voiced = 0, None
            self._pause_n = None          # else the pause was inside the utterance: it goes on
            if robot_speaking and not self._paused:
                out.duck, self._ducked = True, True
        elif self._pause_n is not None:
            self._utterance.append(frame)
            self._utterance_n += len(frame)
            self._pause_n += len(frame)
            if self._pause_n >= self._join_n - 1e-6:
                self._hand_over_to(out)
        still_voiced = False
        if self.speaking:
            self._speech_s += dt
            self._utterance.append(frame)
            self._utterance_n += len(frame)
            if getattr(self.vad, "voiced", True):
                self._voiced_n += len(frame)
                if self._first_voiced is None:
                    self._first_voiced = len(self._utterance) - 1
            # The user is still talking only if the frame itself is voiced and loud: the VAD's
            # hangover after a short "mm-hmm" must not count as talking on.
            level_db = 10.0 * np.log10(float(np.mean(np.square(frame, dtype=np.float64))) + 1e-12)
            self._peak_db = max(self._peak_db, level_db)
            still_voiced = bool(getattr(self.vad, "voiced", True)) and level_db > self._peak_db - c.sustain_db
            if (self._ducked or robot_speaking) and not self._cut and still_voiced \
                    and self._speech_s >= c.backchannel_s - 1e-9:
                if robot_speaking and not self._paused:
                    out.pause, self._paused = True, True
                self._cut, self._ducked = True, False
            if self._stop_said and still_voiced:
                self._after_stop_s += dt
            if self._paused and still_voiced and self._speech_s >= c.resume_window_s - 1e-9:
                out.cut, self._paused = "barge_in", False     # no backchannel: an interruption
            too_long = self._utterance_n >= c.max_utterance_s * self.sample_rate
            if not voiced or too_long:
                out.speech_ended = True
                self.speaking = False
                self.last_speech_s = self._speech_s
                self._pause_n = 0
                self._spoken = len(self._utterance)
                if too_long or self._join_n <= 0 or self._stop_said:
                    self._hand_over_to(out)
                if self._ducked:
                    out.unduck, self._ducked = True, False
        self._preroll.append(frame)
        self._preroll_n += len(frame)
        while self._preroll and self._preroll_n - len(self._preroll[0]) >= c.preroll_s * self.sample_rate:
            self._preroll_n -= len(self._preroll.popleft())
        self._quiet_s = 0.0 if still_voiced else self._quiet_s + dt

        if self._since_onset_s <= c.stop_window_s + 1e-9:
            out.keywords = [w for w in heard if w not in c.stop_words]   # other words pass straight on
            spotted = next((w for w in heard if w in c.stop_words), None)
            if self._stop is None and spotted is not None and self._quiet_s <= STOP_LATE_S + 1e-9:
                self._stop = _StopCandidate(spotted, self._joined)
        self._judge_stop(out, still_voiced, robot_speaking)
        if self._paused and self._stop is None and out.halt is None and not self._stop_said \
                and (not self.speaking or self._quiet_s >= RESUME_QUIET_S - 1e-9):
            out.resume, self._paused = True, False        # a backchannel: play on
            self._cut = False                             # talking on pauses it again
        return out

    def _judge_stop(self, out: Reflexes, still_voiced: bool, robot_speaking: bool) -> None:
        """A candidate stop word is dropped when its stretch of speech is still voiced past
        `stop_window_s` (it was part of a longer phrase: "put the stopper in the bottle"), and
        recognized when the user has been quiet `stop_gap_s` after it."""
        stop, c = self._stop, self.config
        if stop is None:
            return
        if still_voiced:
            if self._since_onset_s > c.stop_window_s + 1e-9:
                self._stop = None                          # the rest of a longer word or phrase
            return
        if self._quiet_s < c.stop_gap_s - 1e-9:
            return
        self._stop = None
        if self._voiced_n < min(self._min_voiced_n, STOP_MIN_VOICED_S * self.sample_rate) - 1e-6:
            return                # a knock or a burst of noise the spotter matched, not a word
        word = stop.word
        out.keywords.append(word)
        out.halt = word
        # Its transcript judges the hold: hand the word over as its stretch of speech ends, not
        # after the pause that joins the parts of an instruction ("stop" is one on its own).
        if self.speaking or self._pause_n is not None:    # its utterance is still being gathered
            self._stop_said, self._after_stop_s, self._stop_joined = True, 0.0, stop.joined
            self._stop_voiced_s = self._since_onset_s - self._quiet_s
            if not self.speaking and out.utterance is None:
                self._hand_over_to(out)
        if robot_speaking:
            out.pause = True       # held with the arm; the engine cuts or resumes it when the stop is judged
            out.unduck = False
            # a user who talks on past the resume window still takes the turn ("no no, the other bowl")
            self._paused = self._paused or self.speaking
        self._ducked = False

    def _hand_over_to(self, out: Reflexes) -> None:
        if self._stop_said:
            out.stop_alone = not self._stop_joined and self._after_stop_s <= STOP_TAIL_S + 1e-9
            out.stop_voiced_s = self._stop_voiced_s + self._after_stop_s
        out.utterance, out.utterance_lag_s = self._hand_over()

    def _hand_over(self) -> tuple[np.ndarray | None, float]:
        """(The utterance from its first voiced frame, less the preroll, to the VAD's end of it,
        or None if it is too little voiced to be speech; the seconds of the pause waited for
        after it, which is no part of it). The buffer is emptied either way."""
        frames, first = self._utterance[:self._spoken], self._first_voiced
        lag_s = sum(len(f) for f in self._utterance[self._spoken:]) / self.sample_rate
        enough = self._voiced_n >= self._min_voiced_n - 1e-6 and first is not None
        self._utterance, self._utterance_n, self._voiced_n, self._first_voiced = [], 0, 0, None
        self._pause_n = None
        self._stop_said = False
        if self.front_end is None:
            return np.concatenate(frames).astype(np.float32), lag_s     # as the VAD cut it
        if not enough:
            self.dropped += 1
            return None, lag_s
        start, kept = first, 0
        c = self.config
        while start > 0 and kept < c.preroll_s * self.sample_rate:
            start -= 1
            kept += len(frames[start])
        return np.concatenate(frames[start:]).astype(np.float32), lag_s
