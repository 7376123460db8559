"""DuplexEngine: perceive, decide, respond — all at once.

Three paths share the engine, each at its own rate:
- the audio path (`push_audio`, every 20–32 ms frame): echo cleaning, reflexes, and one
  frame of the robot's voice returned for the speaker;
- the control path (`tick`, `control_hz`): apply policy answers, halts and staleness, cut
  blocks and hand them to the policy worker, emit the next action;
- the deliberative path: the policy worker, on its own thread or stepped clock; never waited on.
Sensors (`push_image`, `push_state`) and typed text (`push_text`) land in streams. Every
change is announced on `events`. The engine knows no ROS, simulator, socket or model.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import events as ev
from .actions import ActionChunk, ActionLimits, ActionQueue, Command, QueueConfig
from .blocks import Block, check_block_s
from .hearing import VAD, EchoFilter, EnergyVAD, FrontEnd, KeywordSpotter
from .policy import Answer, Decision, SteppedWorker, ThreadedWorker
from .reflex import DEFAULT_STOP_WORDS, Reflex, ReflexConfig, spoken_words
from .speech_out import TTS, SpeechOutput
from .streams import AudioRing, FrameSlot, InputError, StateSlot


@dataclass
class EngineConfig:
    sample_rate: int = 16000
    frame_ms: float = 20.0
    block_s: float = 1.0
    control_hz: float = 20.0
    cameras: tuple[str, ...] = ("agentview", "wrist")
    image_size: tuple[int, int] | None = None      # (H, W) if every camera must have it
    state_dim: int | None = None
    use_audio: bool = True                         # False: typed instructions only, no microphone
    max_age_s: dict[str, float] = field(default_factory=lambda: {"camera": 0.5, "state": 0.25, "audio": 0.5})
    action_mode: str = "blend"
    late_chunks: str = "shift"   # a chunk that arrives after its start: "shift" runs it from now, "skip" drops the past
    committed: int = 1
    blend_ramp: int = 5
    backchannel_s: float = ReflexConfig.backchannel_s       # user speech this long pauses the robot's voice
    resume_window_s: float = ReflexConfig.resume_window_s   # ... still going this long cuts it
    stop_window_s: float = ReflexConfig.stop_window_s
    stop_gap_s: float = ReflexConfig.stop_gap_s
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    stop_hold_s: float = 4.0     # a stop word holds the arm; unless its transcript clears it by then, it halts
    duck_gain: float = 0.25
    reject_template: str = "Sorry, I can't do that: {reason}."
    failing_after: int = 3                         # consecutive failed blocks that make `policy_failing`

    def __post_init__(self) -> None:
        check_block_s(self.block_s)
        if not (20.0 <= self.frame_ms <= 32.0):
            raise ValueError(f"frame_ms={self.frame_ms} must be within 20–32 ms")
        if self.sample_rate <= 0 or self.control_hz <= 0:
            raise ValueError("sample_rate and control_hz must be positive")
        for k, v in self.max_age_s.items():
            if not v > 0:
                raise ValueError(f"max_age_s[{k!r}]={v} must be > 0")
        if self.failing_after < 1:
            raise ValueError(f"failing_after={self.failing_after} must be >= 1")
        if not (0.0 < self.stop_hold_s <= 10.0):
            raise ValueError(f"stop_hold_s={self.stop_hold_s} must be in (0, 10] s")
        self.reflex_config()    # turn-taking and stop settings that cannot work together are refused here

    def reflex_config(self) -> ReflexConfig:
        return ReflexConfig(backchannel_s=self.backchannel_s, resume_window_s=self.resume_window_s,
                            stop_words=self.stop_words, stop_window_s=self.stop_window_s, stop_gap_s=self.stop_gap_s)

    @property
    def frame_samples(self) -> int:
        return int(round(self.sample_rate * self.frame_ms / 1000.0))


# Transcripts that release a stop-word hold when they are all the user said.
BACKCHANNELS = frozenset({"okay", "ok", "yeah", "yes", "yep", "right", "sure", "alright", "all right", "got it",
                          "i see", "uh huh", "uh-huh", "uh uh", "mm hmm", "mm-hmm", "mhm", "hmm", "mm", "thanks",
                          "thank you", "good", "great", "fine", "cool", "nice", "uh", "ah", "aha"})


def is_backchannel(words: list[str]) -> bool:
    """The words are backchannels and nothing else, one or several ("mm-hmm, mm-hmm", "okay,
    good"): Whisper often hears a drawn-out "mm-hmm" twice."""
    i = 0
    while i < len(words):
        step = next((n for n in (2, 1) if " ".join(words[i:i + n]) in BACKCHANNELS), 0)
        if not step:
            return False
        i += step
    return bool(words)


# Three words take longer than this to say: a sentence heard in a word said alone in less is the
# listener filling a short word it did not catch ("and press, press" for "pause").
MIN_SENTENCE_S = 0.6


@dataclass
class _Hold:
    """A stop word heard: the arm holds, keeping its plan, until the utterance's transcript
    judges it (or `stop_hold_s` passes)."""
    word: str
    t: float                       # when it was recognized
    block: int | None = None       # the block that carries its utterance to the policy
    ticks: int = 0                 # control ticks held so far
    alone: bool = True             # nothing was voiced after the word in its stretch of speech
    voiced_s: float = 0.0          # how long that stretch was voiced
    announced: bool = False        # ActionHalt sent


class DuplexEngine:
    """Call `start(t0)`, then feed sensors and call `tick(now)` at `control_hz`."""

    def __init__(self, worker: ThreadedWorker | SteppedWorker, limits: ActionLimits, tts: TTS,
                 config: EngineConfig | None = None, vad: VAD | None = None,
                 keywords: KeywordSpotter | None = None, echo: EchoFilter | None = None,
                 synchronous_speech: bool | None = None, front_end: FrontEnd | None = None) -> None:
        """`front_end`: the listening front end (speech.make_front_end()): it filters every
        echo-cleaned frame before VAD, keywords and the utterances handed to the policy, and
        decides how utterances are cut (see `reflex`)."""
        self.config = c = config or EngineConfig()
        self.worker = worker
        self.events = ev.EventBus()
        self.queue = ActionQueue(limits, QueueConfig(c.control_hz, c.action_mode, c.committed, c.blend_ramp,
                                                     c.late_chunks))
        sync = isinstance(worker, SteppedWorker) if synchronous_speech is None else synchronous_speech
        self.speech = SpeechOutput(tts, c.sample_rate, c.frame_samples, c.duck_gain, synchronous=sync)
        rc = c.reflex_config()
        if keywords is not None:
            spotted = set(getattr(keywords, "words", rc.stop_words))
            if not rc.stop_words:
                raise ValueError("stop_words is empty, but a keyword spotter was given: name the words that "
                                 "halt the arm")
            if set(rc.stop_words) - spotted:
                raise ValueError(f"stop_words {sorted(set(rc.stop_words) - spotted)} are not spotted by the keyword "
                                 f"spotter (it listens for {sorted(spotted)})")
        self.reflex = Reflex(vad or EnergyVAD(), keywords, rc, c.sample_rate, front_end)
        self.echo = echo
        self.audio = AudioRing(c.sample_rate)
        self.images = {name: FrameSlot(name, c.image_size) for name in c.cameras}
        self.state = StateSlot("state", c.state_dim)
        self._lock = threading.RLock()
        self._invalid: dict[str, int] = {}
        self._played = np.zeros(c.frame_samples, np.float32)
        self.muted = False
        self._started = False
        self.reset_state(0.0)

    # --- lifecycle -----------------------------------------------------------------------

    def reset_state(self, t0: float) -> None:
        self._block_index = 0
        self._block_start = t0
        self._next_block_t = t0 + self.config.block_s
        self._heard: list[str] = []
        self._utterances: list[np.ndarray] = []
        self._keywords: list[str] = []
        self._interrupted = False
        self._hold: _Hold | None = None
        self._halt_t = -np.inf
        self._rejected = False
        self._chunk_id = 0
        self._live_chunk: int | None = None
        self._stale: set[str] = set()
        self._announced: set[str] = set()
        self._t_start = t0
        self._said: list[str] = []
        self._failures = 0

    def start(self, t0: float) -> None:
        """Begins the first block at `t0` (engine clock)."""
        with self._lock:
            self.reset_state(t0)
            self._started = True

    def reset(self, now: float) -> None:
        """New episode: forget everything, silence the robot, hold the arm."""
        with self._lock:
            self.worker.reset()
            self.reflex.reset()
            if self.echo is not None:
                self.echo.reset()
            if self.speech.cut():
                self._emit(ev.RobotSpeechCut(now, reason="reset"))
            self._cancel_actions(now, "reset")
            self.reset_state(now)

    def close(self) -> None:
        self.worker.close()

    # --- sensors -------------------------------------------------------------------------

    def push_image(self, camera: str, frame: np.ndarray, stamp: float) -> bool:
        """A camera frame (H, W, 3) uint8 RGB, upright, captured at `stamp`."""
        slot = self.images.get(camera)
        if slot is None:
            return self._refuse(InputError(camera, f"unknown camera; expected one of {list(self.images)}"), stamp)
        try:
            with self._lock:
                slot.put(frame, stamp)
            return True
        except InputError as e:
            return self._refuse(e, stamp)

    def push_state(self, state: np.ndarray, stamp: float) -> bool:
        """Proprioception / joint positions captured at `stamp`."""
        try:
            with self._lock:
                self.state.put(state, stamp)
            return True
        except InputError as e:
            return self._refuse(e, stamp)

    def push_text(self, text: str, now: float) -> None:
        """A typed instruction: it goes into the current block as heard text."""
        text = text.strip()
        if not text:
            return
        with self._lock:
            self._heard.append(text)
        self._emit(ev.UserTranscript(now, text=text, source="typed"))

    def push_audio(self, frame: np.ndarray, stamp: float, played: np.ndarray | None = None,
                   sample_rate: int | None = None) -> np.ndarray:
        """One microphone frame captured from `stamp`; returns the robot's voice for the same
        period (float32, same length; zeros when silent). `played`: what the speaker really
        played in this period, if known (else the frame this engine returned last time)."""
        n_out = self.config.frame_samples
        try:
            a = self.audio.validate(frame, stamp, sample_rate)
        except InputError as e:
            self._refuse(e, stamp)
            return np.zeros(n_out, np.float32)
        t = stamp + len(a) / self.config.sample_rate    # the frame is complete at t
        with self._lock:
            self.audio.push(a, stamp)
            ref = self._played if played is None else np.asarray(played, np.float32)
            heard = self.echo.clean(a, ref) if self.echo is not None else a
            robot_speaking = self.speech.speaking
            r = self.reflex.hear(heard, robot_speaking)
            if r.speech_started:
                self._emit(ev.UserSpeechStart(t))
            if r.duck:
                self.speech.duck()
                self._emit(ev.RobotSpeechDuck(t, gain=self.config.duck_gain))
            for w in r.keywords:
                self._keywords.append(w)
                self._emit(ev.KeywordHeard(t, word=w))
            if r.pause and self.speech.pause():
                self._emit(ev.RobotSpeechPause(t))
            if r.resume and self._hold is None and self.speech.resume():
                self._emit(ev.RobotSpeechResume(t, replayed_s=round(self.speech.replayed_s, 4)))
            if r.cut is not None and self.speech.cut():
                self._interrupted = True
                self._emit(ev.RobotSpeechCut(t, reason=r.cut))
            if r.unduck:
                self.speech.unduck()
                self._emit(ev.RobotSpeechUnduck(t))
            if r.halt is not None and self._hold is None:
                self._hold = _Hold(r.halt, t)
                self._interrupted = True
            if r.speech_ended:
                self._emit(ev.UserSpeechEnd(t, duration_s=self.reflex.last_speech_s))
            if r.utterance is not None:
                self._utterances.append(r.utterance)
                if self._hold is not None and self._hold.block is None:
                    self._hold.block = self._block_index   # its transcript decides the hold
                    self._hold.alone = bool(r.stop_alone)     # None: not the stop word's own utterance
                    self._hold.voiced_s = r.stop_voiced_s
                elif self._hold is not None:
                    self._hold.alone = False               # the user talked on before it was judged
            out, finished = self.speech.next_frame()
            if finished is not None:
                self._said.append(finished)
                self._emit(ev.RobotSpeechEnd(t, text=finished))
            if self.muted:
                out = np.zeros_like(out)
            if len(out) != len(a):   # the caller's frame size differs from the configured one
                out = np.resize(out, len(a)) if len(out) else np.zeros(len(a), np.float32)
            self._played = out
            return out

    # --- control path --------------------------------------------------------------------

    def tick(self, now: float) -> Command:
        """Called once per control period. Never blocks on the policy."""
        with self._lock:
            while self._started and now + 1e-9 >= self._next_block_t:
                self._submit_block(now)
            for answer in self.worker.poll(now):
                self._apply(answer, now)
            stale = self._check_stale(now)
            hold = self._hold
            if hold is not None:
                if not hold.announced:
                    hold.announced = True
                    self._emit(ev.ActionHalt(now, reason=f"stop_word:{hold.word}"))
                if now - hold.t >= self.config.stop_hold_s - 1e-9:
                    self._confirm_stop(now)        # nothing cleared it in time: a stop
                else:
                    hold.ticks += 1
                    return self.queue.hold(now)    # the plan waits, untouched
            if stale:
                self.queue.tick(now)    # keep the grid moving; nothing is sent
                return self.queue.hold(now)
            had = len(self.queue) > 0
            cmd = self.queue.tick(now)
            if had and len(self.queue) == 0 and self._live_chunk is not None:
                self._emit(ev.ActionChunkDone(now, chunk_id=self._live_chunk))
                self._live_chunk = None
            return cmd

    def seed_hold(self, action: np.ndarray) -> None:
        """Called by a front end that knows where the arm is before the first command: holds
        keep that position and the first action ramps from it within the rate limits."""
        with self._lock:
            self.queue.seed(action)

    def plan(self, after: float) -> np.ndarray:
        """The actions planned for the ticks after `after`, limits applied: (n, dof), for front
        ends that publish look-ahead chunks to an interpolating controller."""
        with self._lock:
            if self._stale:
                return np.zeros((0, self.queue.limits.dof), np.float32)
            return self.queue.upcoming(after + 0.5 / self.config.control_hz)[1]

    def stop(self, now: float, reason: str = "stop") -> None:
        """An explicit stop (service call, e-stop button): halt actions and the voice."""
        with self._lock:
            if self.speech.cut():
                self._emit(ev.RobotSpeechCut(now, reason=reason))
            self._halt_t = now
            self._hold = None
            self._cancel_actions(now, reason)
            self._emit(ev.ActionHalt(now, reason=reason))

    def mute(self, on: bool) -> None:
        self.muted = bool(on)

    # --- internals -----------------------------------------------------------------------

    def _submit_block(self, now: float) -> None:
        c = self.config
        t0, t1 = self._block_start, self._next_block_t
        images, stamps = {}, {}
        for name, slot in self.images.items():
            if slot.latest is not None:
                images[name], stamps[name] = slot.latest.value, slot.latest.stamp
        st = self.state.latest
        block = Block(
            index=self._block_index, t_start=t0, t_end=t1,
            audio=self.audio.read(t0, t1), sample_rate=c.sample_rate,
            images=images, image_stamps=stamps,
            state=None if st is None else st.value, state_stamp=None if st is None else st.stamp,
            utterances=self._utterances, heard=" ".join(self._heard),
            user_speaking=self.reflex.speaking, interrupted=self._interrupted,
            keywords=tuple(self._keywords), said=" ".join(self._said),
            robot_speaking=self.speech.speaking, acting=len(self.queue) > 0,
            stale=tuple(sorted(self._stale)),
        )
        self._utterances, self._heard, self._keywords, self._said = [], [], [], []
        self._interrupted = False
        self._block_index += 1
        self._block_start = t1
        self._next_block_t = t1 + c.block_s
        if not self.worker.submit(block, now):
            self._emit(ev.Overrun(now, loop="policy", late_ms=1000.0 * (now - block.t_start), missed=1))

    def _apply(self, answer: Answer, now: float) -> None:
        block, d = answer.block, answer.decision
        if d is None:
            self._failures += 1
            error = answer.error or "no decision"
            self._emit(ev.PolicyError(now, error=error, consecutive=self._failures))
            if self._failures == self.config.failing_after:
                self._emit(ev.PolicyFailing(now, error=error, failures=self._failures))
            return
        self._failures = 0
        if d.heard:
            self._emit(ev.UserTranscript(now, text=d.heard, source="asr"))
        for reason in d.refused:
            self._emit(ev.UtteranceRefused(now, reason=reason))
        n = 0 if d.actions is None else int(np.shape(d.actions)[0])
        self._emit(ev.Decided(now, block_index=block.index, latency_s=now - block.t_end,
                              say=d.say, n_actions=n, control=d.control))
        hold = self._hold
        if hold is not None and hold.block is not None and block.index >= hold.block:
            self._judge_hold(d.heard, now)
            hold = self._hold
        elif hold is None and self._halt_t < block.t_start and (word := self._stop_alone_in(d.heard)):
            self._halt_on_transcript(word, d, block, now)
        if block.t_end <= max(self._halt_t, -np.inf if hold is None else hold.t):
            return   # decided before the user said stop: its actions and words are void
        if hold is not None:
            d.actions = None   # decided while a stop word holds the arm: no new motion until it is judged
        new_instruction = bool(block.heard or d.heard)
        if d.reject is not None:
            self._reject(d, block, now)
            return
        if new_instruction:
            self._rejected = False
        if d.cancel:
            self._cancel_actions(now, "cancel")
            self._emit(ev.ActionHalt(now, reason="cancel"))
        elif d.actions is not None and not self._rejected:
            self._enqueue(d.actions, block.t_end, now)
        if d.say:
            self._say(d.say, now)
        if d.done:
            self._emit(ev.TaskDone(now))

    def _judge_hold(self, heard: str, now: float) -> None:
        """The transcript of the utterance that held the arm. Heard as a backchannel ("okay",
        "uh-huh") it releases the hold, and the plan goes on where it stopped; so does a sentence
        of three words or more with no stop word in it. Anything else halts: a stop word, no
        transcript, a word or two that may be one misheard ("hold", "hult"), or a sentence heard
        in a word said alone too short to hold one (`MIN_SENTENCE_S`: the listener hears "and
        press, press" in "pause")."""
        words = spoken_words(heard)
        stop = bool(set(words) & set(self.reflex.config.stop_words))
        sentence = len(words) >= 3 and not (self._hold.alone and self._hold.voiced_s < MIN_SENTENCE_S)
        if stop or not (is_backchannel(words) or sentence):
            self._confirm_stop(now)
            return
        hold, self._hold = self._hold, None
        self.queue.delay(hold.ticks)
        if self.speech.resume():
            self._emit(ev.RobotSpeechResume(now, replayed_s=round(self.speech.replayed_s, 4)))
        self._emit(ev.ActionRelease(now, reason=f"stop_word:{hold.word}", held_s=round(now - hold.t, 4),
                                    heard=heard))

    def _stop_alone_in(self, heard: str) -> str | None:
        """The first word of a transcript that is stop words and nothing else, else None."""
        words = spoken_words(heard)
        return words[0] if words and set(words) <= set(self.reflex.config.stop_words) else None

    def _halt_on_transcript(self, word: str, d: Decision, block: Block, now: float) -> None:
        """A stop word said alone that the spotter missed (a fast "Halt!", a word in noise):
        its transcript halts the arm, later than the reflex would have. The decision made with
        it keeps its words but not its motion, as a decision made under a hold."""
        self._stop_word(word, block.t_start, now, announce=True)
        d.actions = None

    def _confirm_stop(self, now: float) -> None:
        hold, self._hold = self._hold, None
        self._stop_word(hold.word, hold.t, now, announce=not hold.announced)

    def _stop_word(self, word: str, said_t: float, now: float, announce: bool) -> None:
        """A stop: the voice is cut, the plan cancelled, and decisions of blocks cut before
        `said_t` are void."""
        self._halt_t = said_t
        self._interrupted = True
        if self.speech.cut():
            self._emit(ev.RobotSpeechCut(now, reason="stop_word"))
        self._cancel_actions(now, f"stop_word:{word}")
        if announce:
            self._emit(ev.ActionHalt(now, reason=f"stop_word:{word}"))

    def _reject(self, d: Decision, block: Block, now: float) -> None:
        self._rejected = True
        self._cancel_actions(now, "reject")
        self._emit(ev.ActionHalt(now, reason="reject"))
        self._emit(ev.Rejection(now, reason=d.reject, instruction=block.heard or d.heard))
        self._say(d.say or self.config.reject_template.format(reason=d.reject), now)

    def _enqueue(self, actions: np.ndarray, t_start: float, now: float) -> None:
        self._chunk_id += 1
        chunk = ActionChunk(np.asarray(actions), t_start, self.config.control_hz, self._chunk_id)
        try:
            result = self.queue.add(chunk, now)
        except (TypeError, ValueError) as e:
            self._refuse(InputError("actions", str(e)), now)
            return
        if not result.accepted:
            self._refuse(InputError("actions", result.reason), now)
            return
        self._live_chunk = self._chunk_id
        self._emit(ev.ActionChunkStart(now, chunk_id=self._chunk_id, n_actions=len(chunk.actions),
                                       skipped=result.skipped, shifted=result.shifted))

    def _say(self, text: str, now: float) -> None:
        self.speech.say(text)
        self._emit(ev.RobotSpeechStart(now, text=text))

    def _cancel_actions(self, now: float, reason: str) -> None:
        for cid in self.queue.clear():
            self._emit(ev.ActionChunkCancelled(now, chunk_id=cid, reason=reason))
        self._live_chunk = None

    def _check_stale(self, now: float) -> set[str]:
        c = self.config
        ages: dict[str, float | None] = {n: s.age(now) for n, s in self.images.items()}
        limits = {n: c.max_age_s["camera"] for n in self.images}
        ages["state"], limits["state"] = self.state.age(now), c.max_age_s["state"]
        if c.use_audio:
            ages["audio"], limits["audio"] = self.audio.age(now), c.max_age_s["audio"]
        stale = {n for n, a in ages.items() if a is None or a > limits[n]}
        for n in sorted(stale - self._announced):
            if ages[n] is None and now - self._t_start <= limits[n]:
                continue   # not heard from yet, but only just started: hold quietly
            self._emit(ev.StaleInput(now, stream=n, age_s=-1.0 if ages[n] is None else float(ages[n])))
            self._announced.add(n)
        for n in sorted(self._announced - stale):
            self._emit(ev.InputRecovered(now, stream=n))
            self._announced.discard(n)
        if stale and len(self.queue):
            # Nothing planned from old data survives: a plan resumes only from a fresh decision.
            reason = "stale:" + ",".join(sorted(stale))
            self._cancel_actions(now, reason)
            self._emit(ev.ActionHalt(now, reason=reason))
        self._stale = stale
        return stale

    def _refuse(self, e: InputError, t: float) -> bool:
        n = self._invalid.get(e.stream, 0) + 1
        self._invalid[e.stream] = n
        self._emit(ev.InvalidInput(t, stream=e.stream, reason=e.reason, count=n))
        return False

    def _emit(self, event: ev.Event) -> None:
        self.events.publish(event)
