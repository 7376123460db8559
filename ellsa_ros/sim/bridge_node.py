"""sim_bridge_node: the LIBERO simulator as a ROS 2 node (`sim_bridge` in launch/sim.launch.py).

It stands in for the cameras, the microphone and the arm of config/arm.yaml's graph, so the
policy node runs unchanged against the simulator. Topics (relative names):

  publishes  agentview/image, wrist/image  sensor_msgs/Image rgb8, upright, every `camera_hz`
                                           (sensor-data QoS)
             joint_states                  sensor_msgs/JointState: the 18-d LIBERO proprioception as
                                           `position`, names proprio_0 .. proprio_17
             audio                         std_msgs/Int16MultiArray, dims samples, channels: the
                                           microphone (room noise and the scenario's spoken lines)
             instruction                   std_msgs/String: the scenario's typed lines
             sim/events                    std_msgs/String JSON: episode start, user lines, success, end
             scene_vocabulary              std_msgs/String JSON list: the task scene's object names, latched
                                           (transient local), so the policy's ASR is biased toward them as
                                           in `ellsa sim`
  subscribes action_chunk                  std_msgs/Float32MultiArray [chunk, 7]: end-effector deltas at
                                           control_hz, from the next step on; a new chunk replaces
                                           what is left of the previous one

With `arm_interface: moveit_servo` the arm speaks a real arm's interfaces instead
(`ellsa_ros.sim.servo_arm`): it takes a TwistStamped and a gripper position, and publishes
joint_states with the Panda's joint names and the end-effector PoseStamped.

The episode waits for its policy (`wait_for_policy`): its clock starts once some node
subscribes to `audio` and publishes the arm's commands, so a policy that loads slower than
the simulator still hears the instruction from its first word. Until then the first
observation stands and nothing steps.

The simulator steps on a wall-clock timer at `control_hz`; simulation time (in sim/events)
is steps / control_hz. A step that takes longer than a period delays the next one (no burst).
The policy runs on the wall clock, so a simulator slower than `control_hz` drops its commands.
In the sim graph on 2 cores, rendering both cameras every step held it to 13.6 steps/s (the
policy's plan ran at two thirds of its speed); at `camera_hz` 10 Hz 15.8, at 4 Hz 19.3 steps/s
(as at 2 Hz). So cameras render at 4 Hz by default: a block cut sees a frame at most 0.25 s old.
With no action left the arm holds: zero deltas, the gripper kept. The microphone frames of
each period are published with that step, in order.
"""
from __future__ import annotations

import json
import sys
from collections import deque
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Int16MultiArray, String

from ellsa_ros.nodes.messages import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, audio_msg, chunk_array, image_msg, pcm16
from ellsa_ros.nodes.params import NodeParams, ParamError, declare, param
from ellsa_ros.nodes.process import run_node
from ellsa_ros.runtime.streams import InputError
from ellsa_ros.sim.bridge import CAMERAS, GRIPPER_OPEN, episode_steps
from ellsa_ros.sim.frame_rate import frame_interval
from ellsa_ros.sim.microphone import ScriptedMicrophone, read_wav, synthesize
from ellsa_ros.sim.scenario import Scenario


@dataclass(frozen=True)
class SimBridgeParams(NodeParams):
    suite: str = param("libero_spatial", "LIBERO suite")
    task: int = param(0, "task id in the suite", low=0)
    init_state: int = param(0, "which of the task's init states", low=0)
    image_size: int = param(128, "camera image size in pixels (square)", low=16, high=1024)
    render_quality: str = param("tuned", "'tuned' for speed or 'stock' rendering", choices=("tuned", "stock"))
    scenario: str = param("", "scenario YAML played into the microphone; '' speaks the task's instruction")
    instruction_at_s: float = param(1.0, "without a scenario: when the instruction is spoken (sim s)", low=0.0)
    voice: str = param("hibari", "TTS that speaks the user's lines (ellsa_ros.speech.make_tts)")
    sample_rate: int = param(16000, "microphone samples per second", low=8000, high=48000)
    frame_ms: float = param(20.0, "microphone frame length in milliseconds", low=20.0, high=32.0)
    control_hz: float = param(20.0, "simulator steps per second (LIBERO runs at 20 Hz)", low=1.0, high=100.0)
    camera_hz: float = param(4.0, "camera frames per second; control_hz divided by a whole number (rendering "
                             "costs more than a physics step)", low=0.1, high=100.0)
    max_steps: int = param(0, "steps before the episode ends; 0: the scenario's length, or the suite's limit "
                                 "counted from the end of the spoken instruction (as ellsa sim)", low=0)
    wait_for_policy: bool = param(True, "start the episode only once a node listens on audio and publishes "
                                  "the arm's commands; false starts it at once")
    arm_interface: str = param("chunk", "'chunk': action_chunk in, the 18-d state as joint_states out; "
                               "'moveit_servo': a TwistStamped and a gripper position in, the Panda's "
                               "joint_states and end-effector pose out", choices=("chunk", "moveit_servo"))
    twist_topic: str = param("/servo_node/delta_twist_cmds", "TwistStamped commands (moveit_servo)")
    twist_frame: str = param("panda_link0", "frame a twist must be in; others are refused (moveit_servo)")
    command_timeout_s: float = param(0.1, "a twist older than this counts as zero, as Servo's timeout",
                                     low=0.001)
    gripper_topic: str = param("/gripper_controller/commands", "Float64MultiArray [position] (moveit_servo)")
    pose_topic: str = param("ee_pose", "end-effector PoseStamped published (moveit_servo)")
    pose_frame: str = param("panda_link0", "frame_id of the published pose: the arm's base")
    linear_scale: float = param(1.0, "m/s of a normalized position delta of 1 (as the policy node's)", low=1e-6)
    angular_scale: float = param(10.0, "rad/s of a normalized rotation delta of 1", low=1e-6)
    gripper_open: float = param(0.04, "gripper position that means open (action -1)")
    gripper_closed: float = param(0.0, "gripper position that means closed (action +1)")

    def check(self) -> None:
        if self.gripper_open == self.gripper_closed:
            raise ParamError("gripper_closed", f"equals gripper_open ({self.gripper_open})")
        try:
            frame_interval(self.camera_hz, self.control_hz, "camera_hz")
        except ValueError as e:
            raise ParamError("camera_hz", str(e)) from None


class SimBridgeNode(Node):
    def __init__(self, env=None, **node_options) -> None:
        """`env`: an already built LiberoEnv (composition code, tests); else built from parameters.
        `node_options` go to rclpy's Node (context, parameter_overrides, ...)."""
        super().__init__("sim_bridge", **node_options)
        self._own_env = env is None
        self.params: SimBridgeParams = declare(self, SimBridgeParams)
        p = self.params
        self.env = env if env is not None else _build_env(p)
        self.obs, info = self.env.reset(options={"task": p.task, "init_state": p.init_state})
        self.frame_samples = int(round(p.sample_rate * p.frame_ms / 1000.0))
        self.mic, self.typed, scenario = _microphone(p, info["task"])
        self.period_s = 1.0 / p.control_hz
        self.frame_every = frame_interval(p.camera_hz, p.control_hz, "camera_hz")
        user_ends = [u.t_end for u in self.mic.utterances] + [t for t, _ in self.typed]
        self.max_steps = p.max_steps or episode_steps(scenario, user_ends, self.env.max_steps, self.period_s)
        self.steps, self.frames_sent, self.chunks, self.refused = 0, 0, 0, 0
        self.actions: deque[np.ndarray] = deque()
        self.gripper = GRIPPER_OPEN
        self.done = False
        self.started = not p.wait_for_policy
        self.waiting_since: float | None = None
        self.next_wait_log = 0.0
        self.image_pubs = {c: self.create_publisher(Image, f"{c}/image", SENSOR_QOS) for c in CAMERAS}
        self.audio_pub = self.create_publisher(Int16MultiArray, "audio", SENSOR_QOS)
        self.instruction_pub = self.create_publisher(String, "instruction", RELIABLE_QOS)
        self.event_pub = self.create_publisher(String, "sim/events", RELIABLE_QOS)
        self.vocabulary_pub = self.create_publisher(String, "scene_vocabulary", LATCHED_QOS)
        self.vocabulary_pub.publish(String(data=json.dumps(list(_scene_names(p)))))
        self.arm = None
        if p.arm_interface == "moveit_servo":
            from ellsa_ros.sim.servo_arm import ServoArm
            self.arm = ServoArm(self, p, self.env)
        else:
            self.state_pub = self.create_publisher(JointState, "joint_states", SENSOR_QOS)
            self.create_subscription(Float32MultiArray, "action_chunk", self.chunk_callback, RELIABLE_QOS)
        self.command_topic = "action_chunk" if self.arm is None else p.twist_topic
        self.episode = {"task": info["task"], "suite": p.suite, "task_id": p.task, "init_state": p.init_state,
                        "user": [{"t": u.t_start, "kind": u.kind, "text": u.text} for u in self.mic.utterances]}
        self.timer = self.create_timer(self.period_s, self.step_callback)
        if self.started:
            self.publish_event("episode_start", **self.episode)
        self.publish_observation()

    def chunk_callback(self, msg: Float32MultiArray) -> None:
        try:
            actions = chunk_array(msg)
            if actions.shape[1] != 7 or not np.all(np.isfinite(actions)):
                raise InputError("action_chunk", f"expected finite (chunk, 7) actions, got {actions.shape}")
        except InputError as e:
            self.refused += 1
            self.get_logger().warning(f"refused action chunk #{self.refused}: {e}")
            return
        self.actions = deque(np.clip(actions, -1.0, 1.0).astype(np.float64))
        self.chunks += 1

    def step_callback(self) -> None:
        """One control period: microphone frames, typed lines, one simulator step, observations."""
        if self.done or not (self.started or self.policy_ready()):
            return
        t = self.steps * self.period_s
        self.publish_audio(t + self.period_s)
        while self.typed and self.typed[0][0] <= t + 1e-9:
            self.instruction_pub.publish(String(data=self.typed.pop(0)[1]))
        if self.arm is not None:
            action = self.arm.action()
        else:
            action = self.actions.popleft() if self.actions else self.hold()
        self.gripper = float(action[-1])
        self.obs, _reward, success, _truncated, _info = self.env.step(action)
        self.steps += 1
        self.publish_observation()
        if success or self.steps >= self.max_steps:
            self.done = True
            self.publish_event("episode_end", success=bool(success), steps=self.steps, t=self.steps * self.period_s)

    def policy_ready(self) -> bool:
        """Whether a policy has joined: a listener on audio and a publisher of commands (a recorder
        only listens). The first call that sees one starts the episode; the wait is logged every 5 s."""
        now = self.get_clock().now().nanoseconds * 1e-9
        if self.waiting_since is None:
            self.waiting_since, self.next_wait_log = now, now
        if self.count_subscribers("audio") > 0 and self.count_publishers(self.command_topic) > 0:
            self.started = True
            self.get_logger().info(f"a policy joined after {now - self.waiting_since:.1f} s: the episode starts")
            self.publish_event("episode_start", **self.episode)
            return True
        if now >= self.next_wait_log:
            self.next_wait_log += 5.0
            self.get_logger().info(f"waiting for a policy: a subscriber on audio and a publisher on "
                                   f"{self.command_topic} (wait_for_policy)")
        return False

    def hold(self) -> np.ndarray:
        action = np.zeros(7)
        action[-1] = self.gripper
        return action

    def publish_audio(self, until_s: float) -> None:
        frame_s = self.frame_samples / self.params.sample_rate
        while (self.frames_sent + 1) * frame_s <= until_s + 1e-9:
            samples = self.mic(self.frames_sent * frame_s, self.frame_samples)
            self.audio_pub.publish(audio_msg(pcm16(samples)))
            self.frames_sent += 1

    def publish_observation(self) -> None:
        stamp = self.get_clock().now().to_msg()
        # A camera topic publishes whoever subscribes: both are rendered on the camera ticks.
        due = self.steps % self.frame_every == 0 and self.env.config.cameras
        images = self.env.render_cameras(tuple(self.image_pubs)) if due else {}
        for camera, pub in self.image_pubs.items():
            if camera in images:
                pub.publish(image_msg(images[camera], stamp, camera))
        if self.arm is not None:
            return self.arm.publish(stamp)
        state = JointState(name=[f"proprio_{i}" for i in range(len(self.obs["state"]))],
                           position=[float(x) for x in self.obs["state"]])
        state.header.stamp = stamp
        self.state_pub.publish(state)

    def publish_event(self, kind: str, **fields) -> None:
        self.event_pub.publish(String(data=json.dumps({"kind": kind, "t": self.steps * self.period_s, **fields})))

    def destroy_node(self) -> None:
        if self._own_env and hasattr(self, "env"):   # absent when a bad parameter stopped the start
            self.env.close()
        super().destroy_node()


def _scene_names(p: SimBridgeParams) -> tuple[str, ...]:
    from ellsa_ros.sim.suites import scene_vocabulary, task_spec
    return scene_vocabulary(task_spec(p.suite, p.task))


def _build_env(p: SimBridgeParams):
    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
    try:
        return LiberoEnv(LiberoEnvConfig(p.suite, p.task, image_size=p.image_size, render_quality=p.render_quality))
    except ValueError as e:
        raise ParamError("task" if "task id" in str(e) else "suite", str(e)) from None


def _microphone(p: SimBridgeParams, instruction: str) -> tuple[ScriptedMicrophone, list[tuple[float, str]], Scenario]:
    """The microphone with the scenario's spoken lines placed, the typed lines (time, text), and
    the scenario."""
    from ellsa_ros.sim.scenario import ScenarioError, instruction_scenario, load_scenario
    try:
        scenario = load_scenario(p.scenario) if p.scenario else instruction_scenario(at_s=p.instruction_at_s)
    except (ScenarioError, FileNotFoundError) as e:
        raise ParamError("scenario", str(e)) from None
    scenario = scenario.for_task(instruction)
    mic = ScriptedMicrophone(p.sample_rate)
    typed: list[tuple[float, str]] = []
    tts = None
    for e in scenario.events:
        if e.kind == "silence":
            continue
        if e.typed:
            typed.append((e.at_s, e.text))
            continue
        if e.wav is not None:
            audio = read_wav(e.wav, p.sample_rate)
        else:
            if tts is None:
                from ellsa_ros.speech import make_tts
                tts = make_tts(name=p.voice)
            audio = synthesize(tts, e.text, p.sample_rate)
        mic.place(e.at_s, audio, e.kind, e.text)
    return mic, typed, scenario


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridgeNode, "sim_bridge", args)


if __name__ == "__main__":
    sys.exit(main())
