"""CURVE keys for the policy link, and the rule that only loopback may go without them.

`ellsa serve --gen-keys DIR` writes one key pair for the server and one for a robot:

    DIR/server.key  DIR/server.key_secret     the server's pair (the secret stays on the GPU host)
    DIR/robot.key   DIR/robot.key_secret      the robot's pair (copy DIR/server.key and both to the robot)
    DIR/authorized/robot.key                  public keys the server lets in (add one per robot)

The server (`--keys DIR`) loads its secret and admits only the public keys in DIR/authorized;
the robot (`policy.remote_keys: DIR`) loads its own pair and the server's public key.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

SERVER = "server"
ROBOT = "robot"
AUTHORIZED = "authorized"


@dataclass(frozen=True)
class CurveKeys:
    public: bytes
    secret: bytes
    server_public: bytes   # the server's public key (equal to `public` on the server)
    authorized_dir: Path | None = None


def generate(keys_dir: str | os.PathLike, robot: str = ROBOT) -> list[Path]:
    """Creates the server pair (unless it exists) and a pair for `robot`; returns the files written."""
    d = Path(keys_dir)
    (d / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not (d / f"{SERVER}.key_secret").exists():
        written += [Path(p) for p in zmq.auth.create_certificates(d, SERVER)]
    if (d / f"{robot}.key_secret").exists():
        raise FileExistsError(f"{d / (robot + '.key_secret')} exists; pick another robot name or remove it")
    pub, sec = (Path(p) for p in zmq.auth.create_certificates(d, robot))
    shutil.copy(pub, d / AUTHORIZED / pub.name)
    written += [pub, sec, d / AUTHORIZED / pub.name]
    for p in written:
        if p.name.endswith("_secret"):
            p.chmod(0o600)
    return written


def server_keys(keys_dir: str | os.PathLike) -> CurveKeys:
    d = Path(keys_dir)
    public, secret = _load_pair(d / f"{SERVER}.key_secret")
    if not (d / AUTHORIZED).is_dir() or not any((d / AUTHORIZED).glob("*.key")):
        raise FileNotFoundError(f"{d / AUTHORIZED} holds no public keys: no robot could connect")
    return CurveKeys(public, secret, public, d / AUTHORIZED)


def robot_keys(keys_dir: str | os.PathLike, robot: str = ROBOT) -> CurveKeys:
    d = Path(keys_dir)
    public, secret = _load_pair(d / f"{robot}.key_secret")
    server_file = d / f"{SERVER}.key"
    if not server_file.exists():
        raise FileNotFoundError(f"{server_file} is missing: copy the server's public key next to the robot's keys")
    server_public, _ = zmq.auth.load_certificate(server_file)
    return CurveKeys(public, secret, server_public)


def _load_pair(secret_file: Path) -> tuple[bytes, bytes]:
    if not secret_file.exists():
        raise FileNotFoundError(f"{secret_file} is missing: create keys with `ellsa serve --gen-keys DIR`")
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    return public, secret


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp" or not rest:
        raise ValueError(f"endpoint {endpoint!r} is not tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:   # "*", an interface name or a host name: not loopback
        return False


def apply_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def apply_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public
