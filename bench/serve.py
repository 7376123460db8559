"""`ellsa bench serve`: the remote-inference link against the same policy in process.

Payload: one block step with two 128 px RGB images, one block of 16 kHz float32 audio and an
8-value state. The policy (`PayloadPolicy`) reads every byte of it and returns a chunk, so the
numbers are the link's cost, not a model's. The server runs as `ellsa serve` in its own process.

Reported:
- inproc_ms_p50: `policy.step(block)` in this process;
- loopback_ms_p50 / _p99: `RemotePolicy.step(block)` over tcp://127.0.0.1, and the overhead
  (p50 loopback less p50 in process) and ratio;
- clients4_steps_per_s: steps answered per second with 4 robots stepping at once (threads);
- underruns_240ms: control ticks (20 Hz, wall clock) with no action to send, once actions
  started, over an episode with a 240 ms round trip added by a DelayLine; the chunk horizon
  is longer than block + latency, so the target is 0;
- openpi_ms_p50: the same payload through openpi-client's WebsocketClientPolicy against a
  websockets server written as openpi's WebsocketPolicyServer (openpi-client ships no
  server); null when openpi-client or websockets does not import.
- session_marginal_mb: the server's RSS growth per idle session, after `sessions_max_tested`
  robots said HELLO to `ellsa serve --policy` on an untrained checkpoint of the model
  (`--session-model-size`, default small, the embedded default's size): what one more robot
  costs when sessions share the weights. sessions_held: how many of them were welcomed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ellsa_ros.runtime.actions import ActionChunk, ActionLimits, ActionQueue, QueueConfig
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.clock import RateScheduler, WallClock
from ellsa_ros.runtime.policy import Decision, ThreadedWorker
from ellsa_ros.serve import RemoteConfig, RemotePolicy
from ellsa_ros.serve.delay import DelayLine

DOF, HZ = 7, 20.0


class PayloadPolicy:
    """Touches every input byte (as a model's encoders would) and answers a chunk that covers
    the next block and then some: `chunk` actions at 20 Hz."""
    block_s, dof, control_hz = 1.0, DOF, HZ
    chunk = 30

    def reset(self) -> None:
        self.steps = 0

    def step(self, block: Block) -> Decision:
        level = float(block.audio.mean()) + sum(float(img.mean()) for img in block.images.values()) / 255.0
        level += 0.0 if block.state is None else float(block.state.sum())
        t = block.t_end + np.arange(self.chunk) / HZ
        actions = np.zeros((self.chunk, DOF), np.float32)
        actions[:, 0] = 0.2 * np.sin(t)
        actions[:, 1] = np.float32(np.tanh(level) * 0.01)
        return Decision(actions=actions)


class ShortBlockPolicy(PayloadPolicy):
    """For the latency episode: 0.5 s blocks, 1.0 s chunks (horizon > block + 240 ms)."""
    block_s, chunk = 0.5, 20


def payload(index: int, block_s: float, image_px: int, t_end: float | None = None) -> Block:
    rng = np.random.default_rng(index)
    t1 = (index + 1) * block_s if t_end is None else t_end
    images = {c: rng.integers(0, 255, (image_px, image_px, 3), dtype=np.uint8) for c in ("agentview", "wrist")}
    return Block(index=index, t_start=t1 - block_s, t_end=t1,
                 audio=rng.uniform(-0.2, 0.2, int(16000 * block_s)).astype(np.float32), sample_rate=16000,
                 images=images,
                 image_stamps={"agentview": t1, "wrist": t1}, state=rng.standard_normal(8).astype(np.float32),
                 state_stamp=t1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=400, help="timed steps per round-trip measurement")
    parser.add_argument("--image-px", type=int, default=128, help="camera image side (two cameras)")
    parser.add_argument("--clients", type=int, default=4, help="robots stepping at once for the throughput")
    parser.add_argument("--latency-ms", type=float, default=240.0, help="round trip added for the underrun run")
    parser.add_argument("--episode-blocks", type=int, default=16, help="0.5 s blocks in the underrun run")
    parser.add_argument("--sessions", type=int, default=48, help="idle sessions opened for session_marginal_mb")
    parser.add_argument("--session-model-size", default="small", help="model size served for session_marginal_mb")


def measure(args: argparse.Namespace) -> dict:
    block_s = PayloadPolicy.block_s
    blocks = [payload(i, block_s, args.image_px) for i in range(16)]
    local = PayloadPolicy()
    local.reset()
    inproc = _timed(lambda i: local.step(blocks[i % 16]), args.steps)
    _progress(f"in process: p50 {np.median(inproc):.3f} ms")

    port = _free_port()
    server = _start_server("bench.serve:PayloadPolicy", port)
    openpi_client, openpi_server = _openpi_client(blocks)
    try:
        robot = RemotePolicy(RemoteConfig(f"tcp://127.0.0.1:{port}", robot="bench"))
        robot.connect()
        _timed(lambda i: robot.step(blocks[i % 16]), 50)    # warm up
        # Side by side: alternate rounds, so that both paths see the same machine load.
        loop_rounds, openpi_rounds = [], []
        for _ in range(max(1, args.steps // 50)):
            loop_rounds.append(_timed(lambda i: robot.step(blocks[i % 16]), 50))
            if openpi_client is not None:
                openpi_rounds.append(_timed(openpi_client, 50))
        loop = np.concatenate(loop_rounds)
        openpi = np.concatenate(openpi_rounds) if openpi_rounds else None
        robot.close()
        _progress(f"loopback: p50 {np.median(loop):.3f} ms, p99 {np.percentile(loop, 99):.3f} ms")
        if openpi is not None:
            _progress(f"openpi websocket: p50 {np.median(openpi):.3f} ms, p99 {np.percentile(openpi, 99):.3f} ms")
        steps_per_s = _throughput(port, blocks, args.clients, args.steps)
        _progress(f"{args.clients} clients: {steps_per_s:.0f} steps/s")
    finally:
        _stop(server)
        if openpi_server is not None:
            _stop(openpi_server)

    port = _free_port()
    server = _start_server("bench.serve:ShortBlockPolicy", port)
    try:
        underrun = _underrun_episode(port, args.latency_ms / 1000.0, args.episode_blocks, args.image_px)
        _progress(f"{args.latency_ms:.0f} ms round trip: {underrun}")
    finally:
        _stop(server)

    memory = _session_memory(args.sessions, args.session_model_size)
    _progress(f"{memory['sessions_held']} idle sessions: {memory['session_marginal_mb']} MB each")

    p50_in, p50_loop = float(np.median(inproc)), float(np.median(loop))
    return {
        "payload_bytes": int(sum(b.audio.nbytes + b.state.nbytes + sum(i.nbytes for i in b.images.values())
                                 for b in blocks[:1])),
        "inproc_ms_p50": round(p50_in, 4),
        "loopback_ms_p50": round(p50_loop, 4),
        "loopback_ms_p99": round(float(np.percentile(loop, 99)), 4),
        "loopback_overhead_ms_p50": round(p50_loop - p50_in, 4),
        "loopback_ratio_p50": round(p50_loop / p50_in, 2) if p50_in > 0 else None,
        "clients4_steps_per_s": round(steps_per_s, 1),
        "underruns_240ms": underrun["underruns"],
        "underrun_episode": underrun,
        "openpi_ms_p50": None if openpi is None else round(float(np.median(openpi)), 4),
        "openpi_ms_p99": None if openpi is None else round(float(np.percentile(openpi, 99)), 4),
        **memory,
    }


def _session_memory(n: int, size: str) -> dict:
    """`ellsa serve --policy` on an untrained checkpoint; RSS before and after `n` robots said
    HELLO (each its own RemotePolicy, so its own peer) and were welcomed."""
    from ellsa_ros.model import checkpoint
    from ellsa_ros.model.config import sized
    from ellsa_ros.model.network import EllsaNet

    with tempfile.TemporaryDirectory(prefix="ellsa-bench-serve-") as tmp:
        folder = checkpoint.save(EllsaNet(sized(size)), Path(tmp) / size)
        port = _free_port()
        server = _start_server(None, port, ["--policy", str(folder), "--max-sessions", str(max(n, 64))])
        robots: list[RemotePolicy] = []
        try:
            time.sleep(1.0)     # let the allocator settle after the checkpoint load
            before = _rss_mb(server.pid)
            for k in range(n):
                robots.append(RemotePolicy(RemoteConfig(f"tcp://127.0.0.1:{port}", robot=f"idle-{k:03d}",
                                                        hello_timeout_s=30.0)))
                robots[-1].connect()
            time.sleep(1.0)
            after = _rss_mb(server.pid)
        finally:
            for r in robots:
                r.close()
            _stop(server)
    return {"session_marginal_mb": round((after - before) / n, 3), "sessions_max_tested": n,
            "sessions_held": len(robots), "session_rss_mb_before": round(before, 1),
            "session_rss_mb_after": round(after, 1), "session_model_size": size}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def _timed(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out[i] = (time.perf_counter() - t0) * 1000.0
    return out


def _throughput(port: int, blocks: list[Block], clients: int, steps: int) -> float:
    robots = [RemotePolicy(RemoteConfig(f"tcp://127.0.0.1:{port}", robot=f"bench-{k}")) for k in range(clients)]
    for r in robots:
        r.connect()
    go = threading.Barrier(clients + 1)

    def drive(r: RemotePolicy) -> None:
        go.wait()
        for i in range(steps):
            r.step(blocks[i % 16])

    threads = [threading.Thread(target=drive, args=(r,)) for r in robots]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for r in robots:
        r.close()
    return clients * steps / elapsed


def _underrun_episode(port: int, rtt_s: float, n_blocks: int, image_px: int) -> dict:
    """A wall-clock control loop at 20 Hz: blocks every 0.5 s go through a ThreadedWorker to
    the server behind a DelayLine; answers are queued at their block's end time."""
    spec_block_s, chunk = ShortBlockPolicy.block_s, ShortBlockPolicy.chunk
    with DelayLine(f"tcp://127.0.0.1:{port}", rtt_s) as link:
        robot = RemotePolicy(RemoteConfig(link.endpoint, robot="bench-latency"))
        robot.connect()
        worker = ThreadedWorker(robot, name="bench-remote")
        clock = WallClock()
        worker.bind_clock(clock.now)
        queue = ActionQueue(ActionLimits.ee_delta(DOF), QueueConfig(hz=HZ, mode="blend", committed=1))
        sched = RateScheduler(clock, HZ)
        ticks_per_block = int(round(spec_block_s * HZ))
        underruns, started, errors, ages = 0, False, [], []
        t0 = clock.now()
        sched.start(t0)
        for k in range(n_blocks * ticks_per_block + 1):
            tick = sched.wait()
            now = tick.deadline
            if k and k % ticks_per_block == 0:
                n = k // ticks_per_block - 1
                worker.submit(payload(n, spec_block_s, image_px, t_end=now), now)
            for answer in worker.poll(now):
                if answer.decision is None:
                    errors.append(answer.error.splitlines()[0])
                    continue
                ages.append(now - answer.block.t_end)
                queue.add(ActionChunk(answer.decision.actions, answer.block.t_end, HZ, answer.block.index), now)
            cmd = queue.tick(now)
            started = started or not cmd.hold
            underruns += int(started and cmd.hold)
        worker.close()
        robot.close()
    return {"underruns": underruns, "rtt_ms": rtt_s * 1000.0, "block_s": spec_block_s,
            "chunk_horizon_s": chunk / HZ, "answers": len(ages), "errors": errors,
            "answer_age_ms_max": round(1000.0 * max(ages), 1) if ages else None,
            "control_missed_ticks": sched.missed}


# --- openpi's websocket path ---------------------------------------------------------------

def _openpi_client(blocks: list[Block]) -> tuple[Callable[[int], object] | None, subprocess.Popen | None]:
    """openpi-client's WebsocketClientPolicy against the openpi-style server in its own
    process; returns `infer(i)` on the same payloads and the server, or (None, None)."""
    try:
        from openpi_client.websocket_client_policy import WebsocketClientPolicy
    except ImportError as e:
        _progress(f"openpi-client does not import ({e}): openpi_ms_p50 is null")
        return None, None
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.serve", "openpi-server", str(port)],
                              stderr=subprocess.PIPE, text=True, env=_child_env())
    if not _wait_for_line(server, "serving"):
        _progress("the openpi-style websocket server did not start: openpi_ms_p50 is null")
        _stop(server)
        return None, None
    client = WebsocketClientPolicy(host="127.0.0.1", port=port)
    obs = [{"images": b.images, "audio": b.audio, "state": b.state, "t_end": b.t_end} for b in blocks]
    _timed(lambda i: client.infer(obs[i % 16]), 50)     # warm up
    return (lambda i: client.infer(obs[i % 16])), server


def _serve_openpi(port: int) -> None:
    """openpi's WebsocketPolicyServer, minimal: metadata on connect, then receive, infer, send."""
    import websockets.asyncio.server
    from openpi_client import msgpack_numpy

    policy = PayloadPolicy()
    policy.reset()
    packer = msgpack_numpy.Packer()

    async def handler(ws) -> None:
        await ws.send(packer.pack({"block_s": policy.block_s}))
        async for message in ws:
            obs = msgpack_numpy.unpackb(message)
            block = Block(0, obs["t_end"] - 1.0, obs["t_end"], obs["audio"], 16000, obs["images"],
                          {c: obs["t_end"] for c in obs["images"]}, obs["state"], obs["t_end"])
            await ws.send(packer.pack({"actions": policy.step(block).actions}))

    async def main() -> None:
        async with websockets.asyncio.server.serve(handler, "127.0.0.1", port, compression=None, max_size=None):
            print("serving", file=sys.stderr, flush=True)
            await asyncio.Future()

    asyncio.run(main())


# --- processes -----------------------------------------------------------------------------

def _child_env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))


def _start_server(policy_class: str | None, port: int, extra: list[str] | None = None) -> subprocess.Popen:
    source = ["--policy-class", policy_class] if policy_class else []
    proc = subprocess.Popen([sys.executable, "-m", "ellsa_ros.cli", "serve", *source, *(extra or []),
                             "--bind", f"tcp://127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True,
                            env=_child_env())
    if not _wait_for_line(proc, "serving"):
        raise RuntimeError(f"ellsa serve did not start (exit {proc.poll()})")
    return proc


def _wait_for_line(proc: subprocess.Popen, prefix: str) -> bool:
    for line in proc.stderr:
        if line.startswith(prefix):
            # Keep reading its log so that a full pipe never blocks the server.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return True
    return False


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _progress(msg: str) -> None:
    print(f"[bench serve] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["openpi-server"]:
    _serve_openpi(int(sys.argv[2]))
