"""`ellsa bench transport`: camera and audio through the ROS 2 graph, as the policy node sees them.

Real node processes on a ROS domain of their own: `camera_node` (test pattern, 640x480 at
30 Hz, best effort), `microphone_node` (a WAV file at real-time pace, 20 ms frames at
16 kHz = 50 Hz, best effort) and `speaker_node` (reliable in and out). This process
subscribes like the policy node does and measures, after a warm-up:

- camera_hz, camera latency p50/p99 (receive time minus header.stamp, the capture time),
  camera_lost (gaps in the frame counter the test pattern draws into each frame);
- audio_hz, audio_latency_ms_p99 and audio_lost. Audio frames carry no stamp, so the frame
  index is written into the file's samples and latency is the receive time minus the
  frame's due time on the microphone's real-time schedule, taking the fastest frame as the
  schedule's origin (so it is the delay beyond the best case, which is what a p99 target is
  about; the best case itself is the camera's p50 order);
- reliable_lost: 50 Hz speech frames sent reliably to the speaker node minus those it
  reports back as played (reliable `speech_played`), matched by index.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np

from ellsa_ros.nodes.dds import configure_dds


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time after the warm-up")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="unmeasured time once the nodes connect")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)


def _indexed_wav(path: Path, seconds: float, frame: int = 320) -> None:
    """Frame k's first sample is k (mod 32768); the rest is quiet noise."""
    n = int(seconds * 16000) // frame
    x = (np.random.default_rng(0).standard_normal(n * frame) * 30).astype(np.int16).reshape(n, frame)
    x[:, 0] = np.arange(n) % 32768
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.tobytes())


def _percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 3) if values else float("nan")


def measure(args: argparse.Namespace) -> dict:
    from domain_coordinator import domain_id
    with domain_id() as domain, tempfile.TemporaryDirectory() as tmp:
        # Node processes and this one use the shipped Fast DDS profile (shared-memory segments
        # large enough for whole 640x480 frames); they share the discovery range too.
        configure_dds()
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
        wav = Path(tmp) / "indexed.wav"
        _indexed_wav(wav, args.seconds + args.warmup_s + 70.0)   # outlasts the wait for the graph
        bin_dir = Path(sys.executable).parent
        commands = [
            [bin_dir / "camera_node", "--ros-args", "-r", "image:=agentview/image", "-p", f"width:={args.width}",
             "-p", f"height:={args.height}", "-p", f"fps:={float(args.fps)}"],
            [bin_dir / "microphone_node", "--ros-args", "-p", "source:=file", "-p", f"file:={wav}",
             "-p", "loop:=false"],
            [bin_dir / "speaker_node", "--ros-args", "-p", "sink:=file", "-p", f"file:={Path(tmp) / 'spoken.wav'}"],
        ]
        procs = [subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
                 for cmd in commands]
        try:
            return _measure(args, domain)
        finally:
            for p in procs:
                p.send_signal(signal.SIGINT)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def _measure(args: argparse.Namespace, domain: int) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import Int16MultiArray

    from ellsa_ros.nodes import messages as m

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = Node("transport_bench", context=context)
    lock = threading.Lock()
    measuring = threading.Event()
    camera: list[tuple[float, float, int]] = []    # (receive, latency, frame counter)
    audio: list[tuple[float, int]] = []            # (receive, frame index)
    played: set[int] = set()

    def on_image(msg: Image) -> None:
        now = time.time()
        if measuring.is_set():
            index = int(np.frombuffer(bytes(msg.data[:12:3]), np.uint8).view(np.uint32)[0])
            with lock:
                camera.append((now, now - m.from_stamp(msg.header.stamp), index))

    def on_audio(msg: Int16MultiArray) -> None:
        now = time.monotonic()
        if measuring.is_set():
            with lock:
                audio.append((now, int(msg.data[0])))

    def on_played(msg: Int16MultiArray) -> None:
        frame = m.audio_array(msg, "speech_played")
        if frame[0, 0] > 0:
            with lock:
                played.add(int(frame[0, 0]))

    node.create_subscription(Image, "agentview/image", on_image, m.SENSOR_QOS)
    node.create_subscription(Int16MultiArray, "audio", on_audio, m.SENSOR_QOS)
    node.create_subscription(Int16MultiArray, "speech_played", on_played, m.RELIABLE_QOS)
    speech = node.create_publisher(Int16MultiArray, "speech_audio", m.RELIABLE_QOS)
    executor = SingleThreadedExecutor(context=context)   # as the policy node spins
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        # Volatile topics deliver only to matched readers: measure once every link is up
        # (discovery takes seconds on a loaded machine), then after the warm-up.
        print("[transport] waiting for the graph to connect", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 60.0
        while not (speech.get_subscription_count() >= 1 and node.count_publishers("speech_played") >= 1
                   and node.count_publishers("agentview/image") >= 1 and node.count_publishers("audio") >= 1):
            if time.monotonic() > deadline:
                raise RuntimeError("the camera, microphone and speaker nodes did not connect within 60 s")
            time.sleep(0.1)
        print(f"[transport] connected; warming up {args.warmup_s} s", file=sys.stderr, flush=True)
        time.sleep(args.warmup_s)
        measuring.set()
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < args.seconds:       # 50 Hz reliable speech frames, indexed from 1
            sent += 1
            frame = np.zeros(320, np.int16)
            frame[0] = sent
            speech.publish(m.audio_msg(frame))
            time.sleep(max(0.0, t0 + sent * 0.02 - time.monotonic()))
        measuring.clear()
        last, quiet_since = -1, time.monotonic()            # wait for the last played frames (at most 5 s)
        while time.monotonic() - quiet_since < 1.0 and time.monotonic() - t0 < args.seconds + 5.0:
            with lock:
                n = len(played)
            if n != last:
                last, quiet_since = n, time.monotonic()
            time.sleep(0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    with lock:
        cam, aud, back = list(camera), list(audio), set(played)
    seconds = float(args.seconds)
    cam_lost = int(cam[-1][2] - cam[0][2] + 1 - len({c[2] for c in cam})) if cam else -1
    aud_lost = int(aud[-1][1] - aud[0][1] + 1 - len({a[1] for a in aud})) if aud else -1
    origin = min(t - (k + 1) * 0.02 for t, k in aud) if aud else 0.0
    audio_late = [t - (k + 1) * 0.02 - origin for t, k in aud]
    result = {
        "camera_hz": round(len(cam) / seconds, 2),
        "camera_latency_ms_p50": _percentile_ms([c[1] for c in cam], 50),
        "camera_latency_ms_p99": _percentile_ms([c[1] for c in cam], 99),
        "camera_lost": cam_lost,
        "audio_hz": round(len(aud) / seconds, 2),
        "audio_latency_ms_p99": _percentile_ms(audio_late, 99),
        "audio_lost": aud_lost,
        "reliable_sent": sent,
        "reliable_lost": sent - len(back & set(range(1, sent + 1))),
        "image": f"{args.width}x{args.height}",
    }
    missing = sorted(set(range(1, sent + 1)) - back)
    print(f"[transport] {result}; reliable frames missing: {missing[:20]}", file=sys.stderr, flush=True)
    return result
