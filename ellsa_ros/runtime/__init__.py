"""The engine: clocks, streams, blocks, policy worker, action queue, speech out, reflexes.

Nothing here imports ROS, a simulator, sockets or torch: this package defines the interfaces
(`Policy`, `TTS`, `VAD`, `KeywordSpotter`, `Transcriber`) that those layers implement.
"""
