"""Remote inference: a ZeroMQ policy server and the robot-side `RemotePolicy` client.

- protocol.py: versioned msgpack envelopes with raw numpy buffers, named message kinds;
- codec.py: PolicySpec (the handshake), Block and Decision bodies, checked on decode;
- server.py / session.py: `PolicyServer`, one session (own state, shared weights) per robot,
  bound to the peer that opened it; connections.py: which connection ended (socket monitor);
  hello_limit.py: HELLOs per peer;
- client.py: `RemotePolicy`, the runtime Policy over the link (timeouts, reconnection, clock);
- keys.py: CURVE keys (`ellsa serve --gen-keys`), loopback-only without them;
- delay.py: `DelayLine`, a relay that adds latency, to rehearse a slow link;
- command.py: `ellsa serve`.
"""
from .client import AuthenticationFailed, RemoteConfig, RemotePolicy, RemotePolicyError, ServerUnreachable
from .codec import PolicySpec
from .server import PolicyServer, ServerConfig

__all__ = ["AuthenticationFailed", "PolicyServer", "PolicySpec", "RemoteConfig", "RemotePolicy",
           "RemotePolicyError", "ServerConfig", "ServerUnreachable"]
