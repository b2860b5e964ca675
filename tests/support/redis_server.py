"""A real `redis-server` process on a free loopback port, for tests. Never a fake client.

`make test` installs redis-server when it is missing (Makefile, target `redis-server`);
on a laptop, install it with the system's package manager (README). No persistence:
`--save '' --appendonly no`, so the server writes nothing to disk.

    with redis_server() as r:          # r.url == "redis://127.0.0.1:PORT/0"
        ...
        r.kill()                       # SIGKILL, for failure tests
        r.restart()                    # same port again

    RedisServer(tls=True)              # TLS only, tests/fixtures/tls's certificate; r.url is
                                       # rediss://...?ssl_ca_certs=... (and mTLS: client_cert)

Sentinel and Cluster setups of several such servers are in tests/support/redis_ha.py.

A pytest fixture `redis` (function scope) is in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.processes import free_port

READY_TIMEOUT = 10.0
TLS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "tls"
CERT, KEY = TLS_DIR / "cert.pem", TLS_DIR / "key.pem"


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server is not installed: run `make test` (installs it as root on Debian) "
            "or see README.md, 'Redis for the tests'"
        )
    return path


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(CERT))
    ctx.load_cert_chain(str(CERT), str(KEY))
    return ctx


def _ping(port: int, password: str = "", timeout: float = 0.2, tls: bool = False) -> bool:
    """A raw RESP PING, so that readiness does not depend on the client under test."""
    try:
        with contextlib.ExitStack() as stack:
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout))
            if tls:
                s = stack.enter_context(_tls_context().wrap_socket(s, server_hostname="127.0.0.1"))
            if password:
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode()))
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False
    return False


class RedisServer:
    """One redis-server child process; `url` is what CLASSIFY_GATEWAY_REDIS_URL takes."""

    def __init__(
        self,
        port: int | None = None,
        password: str = "",
        *,
        tls: bool = False,
        args: Sequence[str] = (),
        config: str = "",
    ) -> None:
        """`tls`: TLS only (no plain port), clients must show a certificate signed by the
        test root; `args` go after the defaults; `config` is written to a file given
        first (Sentinel needs one it can rewrite). The directory lives until `stop`, so
        a restart finds its files (a cluster node its nodes.conf)."""
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.args = list(args)
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="redis-test-")

    @property
    def dir(self) -> str:
        return self._dir

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={CERT}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def client_cert(self) -> str:
        """The URL options with which a client shows the test certificate (mTLS)."""
        return f"&ssl_certfile={CERT}&ssl_keyfile={KEY}"

    def start(self) -> RedisServer:
        args = [redis_server_path()]
        if self.config:
            conf = Path(self._dir) / "redis.conf"
            if not conf.exists():  # a restart keeps what the server rewrote
                conf.write_text(self.config)
            args.append(str(conf))
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(CERT), "--tls-key-file", str(KEY)]
            args += ["--tls-ca-cert-file", str(CERT), "--tls-auth-clients", "yes"]
        else:
            args += ["--port", str(self.port)]
        args += [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ping(self.port, self.password, tls=self.tls):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.02)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-conversation, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP: Redis keeps its connections but answers nothing (slow, not gone)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(password: str = "") -> Iterator[RedisServer]:
    server = RedisServer(password=password).start()
    try:
        yield server
    finally:
        server.stop()
