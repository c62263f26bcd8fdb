"""A free TCP port on the loopback address, for a server a test starts (a second Ray head, an
S3 server)."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
