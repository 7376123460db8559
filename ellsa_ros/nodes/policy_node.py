"""policy_node: hosts the DuplexEngine on ROS 2 topics.

Subscribes `<camera>/image` and `audio` (sensor-data QoS), `joint_states` (with
`state_source: ee_pose` also the end-effector PoseStamped on `pose_topic`: the state is then
the model's 18-d proprioception, `ellsa_ros.arm.proprio`; with `state_source: fk` the pose
comes from forward kinematics of joint_states through the arm's URDF), `instruction`,
`speech_played` and `scene_vocabulary` (a JSON list of the scene's object names, latched, as
the sim bridge publishes it: the ASR is biased toward them and `speech.vocabulary`).
Publishes a command on every control tick on the output `command_interface` chooses
(`ellsa_ros.nodes.commands`: action_chunk, a MoveIt Servo twist, a JointTrajectory or a
forward-command array, and the gripper), `speech_audio`,
`transcript` and `events` (reliable). Services `~/stop`, `~/reset` (Trigger), `~/mute` and
`~/enable` (SetBool: arms and disarms the command outputs; disarmed at start unless
`armed_at_start`; each change is a `commands_armed` event).

The engine's clock is ROS time minus the node's start time. Malformed inputs are dropped,
counted and logged once. Stale inputs, a failing policy and a policy that has not decided
yet make the engine hold the arm, and every tick still publishes the (holding) command, so
the controller always hears from the policy (for joint positions, from the first joint
state on). The first failure of a run is logged at ERROR with its text;
`policy_failing_after` failures in a row send a `policy_failing` event.
"""
from __future__ import annotations

import json
import sys

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int16MultiArray, String
from std_srvs.srv import SetBool, Trigger

from ellsa_ros.arm.proprio import ProprioceptionTracker
from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.commands import CommandOutputs
from ellsa_ros.nodes.engine_setup import build_engine, build_kinematics
from ellsa_ros.nodes.inputs import DropLog
from ellsa_ros.nodes.params import PolicyParams, declare
from ellsa_ros.nodes.process import run_node
from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.streams import InputError


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy")
        self.params: PolicyParams = declare(self, PolicyParams)
        p = self.params
        self.engine = build_engine(p)
        self.origin_s = self.ros_now_s()
        self.drops = DropLog()
        self.played: np.ndarray | None = None
        self.last_audio_stamp = 0.0
        self.kinematics = build_kinematics(p)
        self.outputs = CommandOutputs(self, p)
        self.speech_pub = self.create_publisher(Int16MultiArray, "speech_audio", m.RELIABLE_QOS)
        self.transcript_pub = self.create_publisher(String, "transcript", m.RELIABLE_QOS)
        self.events_pub = self.create_publisher(String, "events", m.RELIABLE_QOS)
        for cam in p.cameras:
            self.create_subscription(Image, f"{cam}/image", lambda msg, cam=cam: self.image_callback(cam, msg),
                                     m.SENSOR_QOS)
        self.create_subscription(Int16MultiArray, "audio", self.audio_callback, m.SENSOR_QOS)
        self.create_subscription(Int16MultiArray, "speech_played", self.played_callback, m.RELIABLE_QOS)
        self.create_subscription(JointState, "joint_states", self.state_callback, m.SENSOR_QOS)
        self.proprio: ProprioceptionTracker | None = None
        if p.state_source in ("ee_pose", "fk"):
            self.proprio = ProprioceptionTracker(p.base_xyz)
        if p.state_source == "ee_pose":
            self.create_subscription(PoseStamped, p.pose_topic, self.pose_callback, m.SENSOR_QOS)
        self.create_subscription(String, "instruction", self.instruction_callback, m.RELIABLE_QOS)
        self.create_subscription(String, "scene_vocabulary", self.vocabulary_callback, m.LATCHED_QOS)
        self.create_service(Trigger, "~/stop", self.stop_callback)
        self.create_service(Trigger, "~/reset", self.reset_callback)
        self.create_service(SetBool, "~/mute", self.mute_callback)
        self.create_service(SetBool, "~/enable", self.enable_callback)
        self.engine.events.subscribe(self.event_callback)
        self.engine.events.publish(ev.CommandsArmed(0.0, armed=self.outputs.armed, reason="start"))
        self.engine.worker.bind_clock(self.now_s)
        self.engine.start(self.now_s())
        self.timer = self.create_timer(1.0 / p.control_hz, self.control_callback)
        self.get_logger().info(f"{type(self.engine.worker.policy).__name__} at {p.control_hz} Hz, "
                               f"{self.engine.config.block_s} s blocks, {p.action_space} as "
                               f"{p.command_interface} -> {', '.join(self.outputs.topics)}, "
                               f"{'armed' if self.outputs.armed else 'disarmed (~/enable arms)'}")

    # --- time ----------------------------------------------------------------------------

    def ros_now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def now_s(self) -> float:
        """Engine clock: seconds since the node started, on the node's ROS clock."""
        return self.ros_now_s() - self.origin_s

    def stamp_s(self, stamp) -> float:
        return m.from_stamp(stamp) - self.origin_s

    # --- inputs --------------------------------------------------------------------------

    def image_callback(self, camera: str, msg: Image) -> None:
        try:
            frame = m.image_array(msg, camera)
        except InputError as e:
            return self.refuse(e)
        self.engine.push_image(camera, frame, self.stamp_s(msg.header.stamp))

    def state_callback(self, msg: JointState) -> None:
        p = self.params
        stamp = self.stamp_s(msg.header.stamp)
        try:
            q = m.joint_positions(msg, p.gripper_joints if self.proprio else p.joint_names)
            if self.kinematics:
                pos, quat = self.kinematics.pose(m.joint_positions(msg, self.kinematics.joints))
                self.proprio.pose(pos, quat, stamp)
            if self.proprio:
                self.proprio.gripper(q, stamp)
        except ValueError as e:   # InputError, or a reading the proprioception refused
            return self.refuse(as_state_error(e))
        if self.proprio:
            return self.push_proprioception()
        self.engine.push_state(q, stamp)

    def pose_callback(self, msg: PoseStamped) -> None:
        try:
            pos, quat = m.pose_parts(msg, self.params.pose_frame)
            self.proprio.pose(pos, quat, self.stamp_s(msg.header.stamp))
        except ValueError as e:
            return self.refuse(as_state_error(e))
        self.push_proprioception()

    def push_proprioception(self) -> None:
        state = self.proprio.state()
        if state is not None:
            self.engine.push_state(state, self.proprio.stamp)

    def audio_callback(self, msg: Int16MultiArray) -> None:
        try:
            pcm = m.audio_array(msg)
        except InputError as e:
            return self.refuse(e)
        audio = m.mono_float(pcm)
        # Int16MultiArray has no header: the frame began one frame length before it arrived.
        stamp = max(self.now_s() - len(audio) / self.params.sample_rate, self.last_audio_stamp)
        self.last_audio_stamp = stamp
        played, self.played = self.played, None
        if played is not None and len(played) != len(audio):
            played = None
        voice = self.engine.push_audio(audio, stamp, played=played)
        self.speech_pub.publish(m.audio_msg(m.pcm16(voice)))

    def played_callback(self, msg: Int16MultiArray) -> None:
        try:
            self.played = m.mono_float(m.audio_array(msg, "speech_played"))
        except InputError as e:
            self.refuse(e)

    def instruction_callback(self, msg: String) -> None:
        self.engine.push_text(msg.data, self.now_s())

    def vocabulary_callback(self, msg: String) -> None:
        try:
            names = json.loads(msg.data)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("not a list of names")
        except ValueError as e:
            return self.refuse(InputError("scene_vocabulary", f"expected a JSON list of names: {e}"))
        policy = self.engine.worker.policy
        if not hasattr(policy, "listen_for"):
            return   # no ASR: nothing to bias
        policy.listen_for([*self.params.vocabulary, *names])
        self.get_logger().info(f"listening for the scene's object names: {policy.prompt}")

    def refuse(self, e: InputError) -> None:
        line = self.drops.drop(e.stream, e.reason)
        if line:
            self.get_logger().warning(line)

    # --- outputs -------------------------------------------------------------------------

    def control_callback(self) -> None:
        now = self.now_s()
        cmd = self.engine.tick(now)
        action = cmd.action if cmd.action is not None else self.first_hold()
        if action is None:
            return   # joint positions, and no joint state yet: there is no position to hold
        # This tick's command, then the rest of the plan as look-ahead (limits applied); a hold
        # is a one-point chunk, so an interpolating controller stops where it is.
        ahead = self.engine.plan(now) if not cmd.hold else np.zeros((0, len(action)), np.float32)
        self.outputs.send(action, ahead, now + self.origin_s, cmd.hold or not self.outputs.armed)
        if self.proprio:
            # What the arm was told: a disarmed or holding arm was sent no motion.
            self.proprio.action(action if self.outputs.armed and not cmd.hold else _no_motion(action))

    def first_hold(self) -> np.ndarray | None:
        """The holding command before the policy ever commanded: zero deltas, or the joints where
        they are (None until a joint state has arrived)."""
        if self.params.action_space == "ee_delta":
            return np.zeros(self.params.dof, np.float32)
        state = self.engine.state.latest
        if state is None:
            return None
        self.engine.seed_hold(state.value)   # the plan then ramps from where the joints are
        return np.asarray(state.value, np.float32)

    def event_callback(self, event: ev.Event) -> None:
        """Called by the engine on whichever thread the event happened."""
        self.events_pub.publish(String(data=event.to_json()))
        if isinstance(event, ev.RobotSpeechStart):
            self.transcript_pub.publish(String(data=event.text))
        elif isinstance(event, ev.InvalidInput):
            self.refuse(InputError(event.stream, event.reason))
        elif isinstance(event, ev.PolicyError) and event.consecutive == 1:
            self.get_logger().error(f"the policy failed on a block (the arm holds): {event.error}")
        elif isinstance(event, ev.PolicyFailing):
            self.get_logger().error(f"the policy has failed {event.failures} blocks in a row; holding until it "
                                    f"decides again. Last error: {event.error}")

    # --- services ------------------------------------------------------------------------

    def stop_callback(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.engine.stop(self.now_s(), reason="stop_service")
        response.success, response.message = True, "holding"
        return response

    def reset_callback(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.engine.reset(self.now_s())
        response.success, response.message = True, "new episode"
        return response

    def mute_callback(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.engine.mute(request.data)
        response.success, response.message = True, "muted" if request.data else "unmuted"
        return response

    def enable_callback(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if bool(request.data) != self.outputs.armed:
            self.outputs.armed = bool(request.data)
            self.engine.events.publish(ev.CommandsArmed(self.now_s(), armed=self.outputs.armed,
                                                        reason="enable_service"))
            self.get_logger().info("command outputs " + ("armed" if self.outputs.armed else "disarmed"))
        response.success, response.message = True, "armed" if self.outputs.armed else "disarmed"
        return response

    def destroy_node(self) -> None:
        if hasattr(self, "outputs") and self.context.ok():   # no outputs: a bad parameter stopped the start
            self.outputs.stop(self.ros_now_s())
            self.events_pub.publish(String(data=ev.CommandsArmed(self.now_s(), reason="shutdown").to_json()))
        if hasattr(self, "engine"):
            self.engine.close()
        super().destroy_node()


def _no_motion(action: np.ndarray) -> np.ndarray:
    """Zero deltas with the gripper kept."""
    held = np.zeros_like(action)
    held[-1] = action[-1]
    return held


def as_state_error(e: ValueError) -> InputError:
    """A refused state reading as the InputError the drop log counts."""
    return e if isinstance(e, InputError) else InputError("state", str(e))


def main(args: list[str] | None = None) -> int:
    # One thread: every callback here is short (inference runs on the engine's worker thread),
    # and rclpy's MultiThreadedExecutor cost more than it saved. Measured with 640x480 frames
    # at 30 Hz on 2 cores: control tick error p99 6 ms single vs 37 ms with 3 threads, frame
    # latency p99 14 vs 38 ms.
    # last_words: the command outputs send a final zero at shutdown.
    return run_node(PolicyNode, "policy", args, last_words=True)


if __name__ == "__main__":
    sys.exit(main())
