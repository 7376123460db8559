"""`ellsa bench model`: per-block step latency of the SA-MoE policy, torch eager vs onnxruntime, and vs dense.

Workload (1 s blocks, 128 px agentview + wrist images, 18-D state): an episode of `--blocks`
blocks in which every `--talk-every`-th block hears an instruction and speaks a reply, the
others are silent both ways, and every block emits the FAST chunk of a real scripted LIBERO
trajectory. The decoded tokens are replayed (`ModelPolicy.replay`) so that untrained weights
decode what a trained model would: the model still runs every call greedy decoding runs.
The dense baseline is the same transformer with one expert (same active parameters per token).

`small` reads the sentence embedding of what it hears (all-MiniLM-L6-v2); `small_plain` is the
same model without it. Each instruction of the workload is new, so a block that hears one pays
for its embedding inside its step; `sentence_ms_p50` is that cost alone, per new instruction.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--blocks", type=int, default=40, help="blocks timed per run")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--talk-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for torch and onnxruntime (with 2, torch's OpenMP threads stalled "
                             "for hundreds of ms per block whenever other processes shared the 2 cores)")


INSTRUCTIONS = (
    "put the black bowl on the plate", "could you place the black bowl onto the plate, thanks",
    "pick up the bowl next to the cookie box and put it on the plate", "open the top drawer of the cabinet",
    "please put the ketchup in the basket", "stack the bowl on the ramekin", "turn on the stove",
    "pick up the alphabet soup and place it in the basket", "move the wine bottle to the top of the cabinet",
    "put the cream cheese in the bowl", "close the microwave, please", "pick up the black bowl from the drawer",
)


def _workload(n: int, talk_every: int):
    from ellsa_ros.model.config import ModelConfig
    from ellsa_ros.model.fast import TRAJECTORIES_PATH, FastTokenizer
    from ellsa_ros.model.layout import SPECIAL_ID, Vocab
    from ellsa_ros.model.text_tokenizer import TextTokenizer
    from ellsa_ros.runtime.blocks import Block

    c, text = ModelConfig(), TextTokenizer()
    fast, vocab = FastTokenizer(c.chunk, c.dof, c.fast_scale), Vocab(c)
    actions = np.load(TRAJECTORIES_PATH)["actions"]
    reply = text.encode("Okay, I will put the black bowl on the plate.")[:c.max_text_tokens]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        talk = i % talk_every == 0
        block = Block(i, float(i), i + 1.0, np.zeros(16000, np.float32), 16000,
                      {cam: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for cam in c.cameras}, {},
                      rng.uniform(-1, 1, c.state_dim).astype(np.float32), float(i),
                      heard=INSTRUCTIONS[(i // talk_every) % len(INSTRUCTIONS)] if talk else "")
        said = list(vocab.text(reply)) if talk else [SPECIAL_ID["<silence>"]]
        chunk = actions[(20 * i) % (len(actions) - c.chunk):][:c.chunk]
        acts = list(vocab.action(fast.encode(chunk)))
        out.append((block, said + [SPECIAL_ID["<eot>"]] + acts + [SPECIAL_ID["<eoa>"]], len(acts)))
    return out


def _time_interleaved(policies: dict, workload, warmup: int) -> dict[str, list[float]]:
    """Block step times (ms) per policy. The policies take turns block by block, so that load
    from other processes on this shared machine falls on all of them alike."""
    for p in policies.values():
        p.reset()
    times: dict[str, list[float]] = {name: [] for name in policies}
    for i, (block, choices, _) in enumerate(workload):
        for name, policy in policies.items():
            t = time.perf_counter()
            policy.replay(block, choices)
            if i >= warmup:
                times[name].append((time.perf_counter() - t) * 1000.0)
    return times


def _stats(times: list[float]) -> tuple[float, float]:
    return round(float(np.percentile(times, 50)), 2), round(float(np.percentile(times, 95)), 2)


def _sentence_cost(texts) -> tuple[float, dict]:
    """Seconds to load the sentence encoder (hash check, import, weights) and ms per new text."""
    from ellsa_ros.model.sentence import SentenceEncoder

    t = time.perf_counter()
    enc = SentenceEncoder()
    load_s = time.perf_counter() - t
    enc.embed("warm up the encoder")
    times = []
    for text in texts:
        t = time.perf_counter()
        enc.embed(text)
        times.append((time.perf_counter() - t) * 1000.0)
    p50, p95 = _stats(times)
    return load_s, {"sentence_ms_p50": p50, "sentence_ms_p95": p95}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from ellsa_ros.model.config import sized
    from ellsa_ros.model.network import EllsaNet
    from ellsa_ros.model.onnx_export import export
    from ellsa_ros.model.onnx_policy import OnnxBackend
    from ellsa_ros.model.policy import ModelPolicy
    from ellsa_ros.model.sentence import SentenceEncoder
    from ellsa_ros.model.tokenizers_for import tokenizers_for
    from ellsa_ros.model.torch_backend import TorchBackend

    torch.set_num_threads(args.threads)
    workload = _workload(args.warmup + args.blocks, args.talk_every)
    result: dict = {"threads": args.threads, "blocks": args.blocks, "block_s": 1.0}
    load_s, sentence = _sentence_cost([f"please {t}" for t in INSTRUCTIONS] + [f"{t}, thanks" for t in INSTRUCTIONS]
                                      + [f"now {t}" for t in INSTRUCTIONS])
    result["sentence_load_s"] = round(load_s, 2)
    result.update(sentence)

    def sentences(c):  # an encoder of its own per policy: every instruction is new to each of them
        return SentenceEncoder() if c.sentence_dim else None

    with tempfile.TemporaryDirectory() as tmp:
        policies = {}
        for size, variant in (("tiny", "moe"), ("small", "moe"), ("small", "plain"), ("small", "dense")):
            torch.manual_seed(0)
            c = sized(size, sentence_dim=0) if variant == "plain" else sized(size)
            c = c.dense() if variant == "dense" else c
            net = EllsaNet(c).eval()
            tok = tokenizers_for(c)
            key = size if variant == "moe" else f"{size}_{variant}"
            result[f"{key}_params"] = sum(p.numel() for p in net.parameters())
            policies[f"{key}_torch"] = ModelPolicy(TorchBackend(net), *tok, sentences(c))
            if variant != "dense":
                folder = export(net, Path(tmp) / key)
                policies[f"{key}_onnx"] = ModelPolicy(OnnxBackend(folder, c, args.threads), *tok, sentences(c))
        print(f"timing {', '.join(policies)} over {args.blocks} blocks, taking turns ...", file=sys.stderr)
        for name, times in _time_interleaved(policies, workload, args.warmup).items():
            result[f"{name}_ms_p50"], result[f"{name}_ms_p95"] = _stats(times)
            print(f"{name}: p50 {result[f'{name}_ms_p50']} ms, p95 {result[f'{name}_ms_p95']} ms", file=sys.stderr)
    result["fast_tokens_per_chunk"] = round(float(np.mean([n for *_, n in workload])), 2)
    result["onnx_speedup"] = round(result["small_torch_ms_p50"] / result["small_onnx_ms_p50"], 3)
    result["onnx_speedup_p95"] = round(result["small_torch_ms_p95"] / result["small_onnx_ms_p95"], 3)
    result["tiny_onnx_speedup"] = round(result["tiny_torch_ms_p50"] / result["tiny_onnx_ms_p50"], 3)
    result["moe_over_dense"] = round(result["small_torch_ms_p50"] / result["small_dense_torch_ms_p50"], 3)
    result["sentence_over_plain_p95"] = round(result["small_torch_ms_p95"] / result["small_plain_torch_ms_p95"], 3)
    result["small_rtf_p95"] = round(min(result["small_torch_ms_p95"], result["small_onnx_ms_p95"]) / 1000.0, 4)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    return result
