"""The training loop: teacher-forced SA-MoE training on data-engine datasets, on CPU or GPU.

Checkpoints every `save_every` steps (a model folder that `load_policy` reads, plus the
optimizer state), and resumes from them, so a long run survives being stopped; Ctrl-C or
SIGTERM saves the step it stopped at before the run ends. With
`eval_every`, checkpoints are also scored in closed loop and the best is kept (selection.py).
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ellsa_ros.model import checkpoint
from ellsa_ros.model.config import ModelConfig, sized
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.model.tokenizers_for import tokenizers_for
from ellsa_ros.model.training_batch import EpisodeLayout, collate
from ellsa_ros.sim.datagen.reader import BlockFormat, DatasetReader

from .augment import Augment
from .examples import episode_layout
from .selection import SELECTION_INIT_STATES, SELECTION_LATENCY_S, Curve, SelectionSet, closed_loop_success, keep_best

STATE_FILE = "train_state.pt"
MODEL_DIR = "model"


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    size: str = "small"
    action_head: str = "continuous"
    speech_input: str = "text"
    block_s: float = 0.5              # with 10-action chunks at 20 Hz, each chunk covers its block
    steps: int = 1500
    batch: int = 4                    # sequences per step
    max_blocks: int = 16              # blocks taught per sequence; a later window keeps the blocks before it as context
    heard: str = "truth"              # heard text: "truth" (as spoken), "asr" (the runtime's transcripts), "mix"
    tasks: str = ""                   # only these tasks of the data, e.g. "libero_spatial:0-4" ("": all)
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.01
    save_every: int = 100
    seed: int = 0
    threads: int = 0                  # torch CPU threads; 0 keeps torch's default
    device: str = "cpu"
    bf16: bool = False                # bfloat16 autocast of the forward pass (weights and optimizer stay fp32)
    model_overrides: dict = field(default_factory=dict)
    augment_shift_px: int = 0         # random image shifts up to this many pixels (0: none)
    augment_jitter: float = 0.0       # brightness / contrast jitter (0: none)
    ema: float = 0.0                  # decay of an exponential moving average of the weights that is saved (0: none)
    eval_every: int = 0               # steps between closed-loop evaluations of the checkpoint (0: none)
    eval_tasks: str = ""              # the selection set: "libero_spatial:0-9,libero_object:0-9"
    eval_init_states: tuple[int, ...] = SELECTION_INIT_STATES
    eval_max_steps: int | None = None  # control steps per selection episode (None: the suite's limit)
    eval_latency_s: float = SELECTION_LATENCY_S   # inference time per block in selection episodes (s)
    init_from: str = ""               # a checkpoint to start from (a fine-tune; its chunk length may differ)

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data: name at least one dataset directory")
        for d in self.data:
            if not (Path(d) / "manifest.json").is_file():
                raise FileNotFoundError(f"data: {d} is not a dataset (no manifest.json); make one with `ellsa datagen`")
        if self.steps < 1 or self.batch < 1 or self.max_blocks < 1 or self.save_every < 1:
            raise ValueError("steps, batch, max_blocks and save_every must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        Augment(self.augment_shift_px, self.augment_jitter)   # bad values named here
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema={self.ema} must be in [0, 1) (0: off, e.g. 0.999)")
        if self.eval_every < 0 or (self.eval_every and not self.eval_tasks):
            raise ValueError("eval_every needs eval_tasks (the selection set), and must be >= 0")
        if self.eval_every:
            self.selection().suites()   # an unknown suite or task is named before training starts
        self.task_filter()
        if self.eval_latency_s < 0:
            raise ValueError(f"eval_latency_s={self.eval_latency_s} must be >= 0")
        if self.init_from:
            checkpoint.read_config(self.init_from)   # not a checkpoint: named before the data is read

    def task_filter(self) -> dict[str, list[int]] | None:
        from ellsa_ros.sim.suites import parse_suite_tasks
        return parse_suite_tasks(self.tasks) if self.tasks else None

    def selection(self) -> SelectionSet:
        return SelectionSet(self.eval_tasks, tuple(self.eval_init_states), self.eval_max_steps, self.eval_latency_s)

    def model_config(self) -> ModelConfig:
        return sized(self.size, action_head=self.action_head, speech_input=self.speech_input, block_s=self.block_s,
                     **self.model_overrides)


def load_sequences(cfg: TrainConfig, c: ModelConfig) -> list[EpisodeLayout]:
    """Every episode of every dataset, cut into blocks of `block_s` and laid out as sequences.

    An episode longer than `max_blocks` is taught in windows of that many blocks, and each
    window's sequence starts at the episode's start: the blocks before the window are laid
    out in full but not taught, so every taught block sees what the streaming policy holds
    when it answers it (the collapsed history with what was heard and said, the last
    `keep_blocks` in full). A window cut from the middle would act without the instruction."""
    text, fast = tokenizers_for(c)
    fmt = BlockFormat.for_model(c, cfg.block_s, heard=cfg.heard)
    out: list[EpisodeLayout] = []
    for root in cfg.data:
        for pairs in DatasetReader(root).sequences(fmt, tasks=cfg.task_filter()):
            for start in range(0, len(pairs), cfg.max_blocks):
                out.append(episode_layout(c, text, fast, pairs[:start + cfg.max_blocks], loss_from=start))
    if not out:
        raise ValueError(f"no episodes in {cfg.data}" + (f" of the tasks {cfg.tasks!r}" if cfg.tasks else ""))
    return out


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(cfg: TrainConfig, log=None) -> Path:
    """Runs (or resumes) training; returns the final checkpoint folder. Progress goes to `log`
    (stderr by default)."""
    log = log or sys.stderr
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    c = cfg.model_config()
    torch.manual_seed(cfg.seed)
    net = EllsaNet(c).to(cfg.device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location=cfg.device, weights_only=False)
        if ModelConfig.from_dict(state["model_config"]) != c:  # a field added since reads as its default
            raise ValueError(f"{state_path} was made with another model config; use a fresh --out")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"[train] resuming at step {step}", file=log)
    elif cfg.init_from:
        reshaped = checkpoint.warm_start(net, cfg.init_from)
        print(f"[train] starting from {cfg.init_from}" + (f" (new length: {', '.join(reshaped)})" if reshaped else ""),
              file=log)
    t0 = time.monotonic()
    sequences = load_sequences(cfg, c)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"[train] {len(sequences)} sequences from {cfg.data} ({time.monotonic() - t0:.0f} s to read); "
          f"{c.size} model, {n_params / 1e6:.2f} M parameters", file=log)
    rng = np.random.default_rng(cfg.seed + step)
    augment = Augment(cfg.augment_shift_px, cfg.augment_jitter)
    views = torch.Generator().manual_seed(cfg.seed + step)
    ema = _ema_of(net, out, cfg) if cfg.ema else None
    net.train()
    curve = Curve(out)
    history: list[dict] = []
    t_last = time.monotonic()
    saved = step
    on_term = None
    if threading.current_thread() is threading.main_thread():
        on_term = signal.signal(signal.SIGTERM, _interrupt)   # a job scheduler's stop, as Ctrl-C
    try:
        while step < cfg.steps:
            picks = rng.choice(len(sequences), size=min(cfg.batch, len(sequences)), replace=False)
            batch = collate(c, [sequences[i] for i in picks])
            batch.images = augment(batch.images, views)
            batch = type(batch)(**{k: (v.to(cfg.device) if torch.is_tensor(v) else
                                       [x.to(cfg.device) for x in v] if isinstance(v, list) else v)
                                   for k, v in vars(batch).items()})
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step)
            with torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.bf16):
                losses = net.loss(batch)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
            step += 1
            history.append({k: float(v.detach()) for k, v in losses.items()})
            if step % 10 == 0 or step == cfg.steps:
                mean = {k: np.mean([h[k] for h in history[-10:]]) for k in history[-1]}
                rate = 10 / max(1e-6, time.monotonic() - t_last)
                t_last = time.monotonic()
                print(f"[train] step {step}/{cfg.steps} loss {mean['loss']:.4f} text {mean['text']:.4f} "
                      f"action {mean['action']:.4f} lr {lr_at(cfg, step - 1):.2e} ({rate:.2f} steps/s)",
                      file=log, flush=True)
                curve.loss(step, mean["loss"])
            evaluating = cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps)
            if step % cfg.save_every == 0 or step == cfg.steps or evaluating:
                save(net, opt, step, cfg, c, out, history, ema)
                saved = step
                if evaluating:
                    select(cfg, net, step, out, curve, log)
                curve.save()
    except KeyboardInterrupt:
        if step > saved:
            save(net, opt, step, cfg, c, out, history, ema)
        print(f"[train] stopped at step {step}, saved: the same command resumes it", file=log, flush=True)
        raise
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    return out / MODEL_DIR


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def select(cfg: TrainConfig, net: EllsaNet, step: int, out: Path, curve: Curve, log) -> None:
    """Evaluates the checkpoint just saved in closed loop; keeps it in RUN/best when it is the best."""
    t0 = time.monotonic()
    result = closed_loop_success(out / MODEL_DIR, cfg.selection(), out / "selection" / f"step{step:06d}")
    best = curve.success(step, result)
    if best:
        keep_best(out / MODEL_DIR, out)
    net.train()
    print(f"[train] step {step}: closed-loop success {100 * result['success_rate']:.1f}% over {result['episodes']} "
          f"episodes {result['per_suite']} ({time.monotonic() - t0:.0f} s){'  best so far: RUN/best' if best else ''}",
          file=log, flush=True)


def _ema_of(net: EllsaNet, out: Path, cfg: TrainConfig) -> torch.optim.swa_utils.AveragedModel:
    """The moving average of the weights (resumed from the run's state when there is one)."""
    ema = torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema))
    state_path = out / STATE_FILE
    if state_path.is_file():
        saved = torch.load(state_path, map_location=cfg.device, weights_only=False).get("ema")
        if saved is not None:
            ema.load_state_dict(saved)
    return ema


def save(net: EllsaNet, opt, step: int, cfg: TrainConfig, c: ModelConfig, out: Path, history: list[dict],
         ema: torch.optim.swa_utils.AveragedModel | None = None) -> None:
    """The checkpoint (the averaged weights when `ema` is on) and the state a resumed run needs."""
    # Write next to the old files, then rename: a run stopped mid-save keeps the last good state.
    shipped = net if ema is None else ema.module
    checkpoint.save(shipped.cpu() if cfg.device != "cpu" else shipped, out / (MODEL_DIR + ".tmp"))
    if cfg.device != "cpu":
        shipped.to(cfg.device)
    tmp_model, final_model = out / (MODEL_DIR + ".tmp"), out / MODEL_DIR
    if final_model.exists():
        for f in final_model.iterdir():
            f.unlink()
        final_model.rmdir()
    tmp_model.rename(final_model)
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "model_config": json.loads(c.to_json()), "ema": None if ema is None else ema.state_dict()},
               out / (STATE_FILE + ".tmp"))
    (out / (STATE_FILE + ".tmp")).rename(out / STATE_FILE)
    meta = {"train_config": asdict(cfg), "step": step, "last_losses": history[-10:]}
    (out / "train.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
