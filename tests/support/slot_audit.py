"""Redis Cluster's one rule, checked on every test that uses a real redis-server.

In a cluster every multi-key command, every script (the keys it declares and every
key it touches) and every MULTI/EXEC must keep its keys in one hash slot, or it fails
with CROSSSLOT. A single server accepts anything, so code tested only against one
server can break the day it meets a cluster. `SlotAudit` watches a server with
MONITOR while a test runs (its own commands, and those of any gateway process it
starts), and `problems()` lists each command, script or transaction whose keys span
more than one slot. The `redis` fixture (tests/conftest.py) fails the test on any, so
a new key layout or script anywhere (quota, page store, coalescing) is checked by the
tests that exercise it, with nothing to register.

Which arguments are keys is Redis's own answer (COMMAND INFO / COMMAND GETKEYS), asked
of a separate server so that a test may kill the one it watches.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import key_slot

from tests.support.redis_server import RedisServer

SCRIPT_COMMANDS = {b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"}
_LINE = re.compile(rb"^\+?[0-9.]+ \[\d+ ([^\]]+)\] (.*)$")
# A quoted argument, unrolled and possessive: no backtracking over long escaped values.
_ARG = re.compile(rb'"([^"\\]*+(?:\\.[^"\\]*+)*+)"', re.DOTALL)


def parse_args(text: bytes) -> list[bytes]:
    r"""The arguments of a MONITOR line: quoted, with C-style escapes (sdscatrepr).

    sdscatrepr writes `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xNN`, a subset of
    Python's bytes escapes, so one C-speed `escape_decode` per argument reads it: v1.3's
    embedding blobs make lines of hundreds of kilobytes, which a loop per byte took
    seconds to read."""
    return [codecs.escape_decode(m.group(1))[0] for m in _ARG.finditer(text)]


class _KeyOracle:
    """Which arguments of a command are keys, as Redis says (one server per session)."""

    def __init__(self) -> None:
        self._server: RedisServer | None = None
        self._conn: Any = None
        # command -> (at most one key, position of the first key or 0): from COMMAND INFO
        self._shape: dict[bytes, tuple[bool, int]] = {}

    def _raw(self, *args: bytes | str) -> Any:
        """One command's raw reply (redis-py's reply callbacks reshape COMMAND's)."""
        if self._conn is None:
            self._server = RedisServer().start()
            atexit.register(self._server.stop)
            client = redis.Redis(host="127.0.0.1", port=self._server.port)
            self._conn = client.connection_pool.get_connection()
        self._conn.send_command(*args)
        return self._conn.read_response()

    def _shape_of(self, name: bytes) -> tuple[bool, int]:
        if name not in self._shape:
            info = self._raw("COMMAND", "INFO", name)
            if not info or info[0] is None:
                self._shape[name] = (True, 0)  # unknown to this server: nothing to check
            else:
                _, _, flags, first, last, *_ = info[0]
                movable = any(f in (b"movablekeys", "movablekeys") for f in flags)
                self._shape[name] = (not movable and first == last, -1 if movable else first)
        return self._shape[name]

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The key arguments of one command."""
        if len(args) < 2:
            return []
        single, first = self._shape_of(args[0].upper())
        if first == 0:
            return []
        if single:
            return [args[first]] if first < len(args) else []
        try:
            return [bytes(k) for k in self._raw("COMMAND", "GETKEYS", *args)]
        except redis.ResponseError:
            return []  # no key arguments in this form


_ORACLE = _KeyOracle()


@dataclass
class _Group:
    what: str
    keys: set[bytes] = field(default_factory=set)


class SlotAudit:
    """MONITOR on one server, from start() until stop(); reconnects after a restart."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self.lines: list[bytes] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlotAudit:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self._server.port), 0.2) as s:
                    s.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
                    buf = bytearray()
                    while not self._stop.is_set():
                        try:
                            chunk = s.recv(1 << 20)
                        except TimeoutError:
                            continue
                        if not chunk:
                            break
                        # Search only the new bytes (and one before): a long line
                        # arrives in many chunks, and splitting the whole buffer
                        # again at each one was quadratic.
                        seen = max(len(buf) - 1, 0)
                        buf += chunk
                        end = buf.find(b"\r\n", seen)
                        while end >= 0:
                            line = bytes(buf[:end])
                            del buf[: end + 2]
                            if line == b"+OK":
                                self._ready.set()
                            elif line:
                                self.lines.append(line)
                            end = buf.find(b"\r\n")
            except OSError:
                pass
            time.sleep(0.05)  # the server was killed: watch it again once it is back

    def problems(self) -> list[str]:
        """Each script, transaction or command whose keys span more than one slot."""
        groups: list[_Group] = []
        script: _Group | None = None
        multi: dict[bytes, _Group] = {}
        for line in self.lines:
            m = _LINE.match(line)
            if m is None:
                continue
            client, args = m.group(1), parse_args(m.group(2))
            if not args:
                continue
            name = args[0].upper()
            if client == b"lua":
                if script is not None:
                    script.keys.update(_ORACLE.keys(args))
                continue
            script = None
            if name == b"MULTI":
                multi[client] = _Group("MULTI ... EXEC")
                continue
            if name in (b"EXEC", b"DISCARD"):
                group = multi.pop(client, None)
                if group is not None and name == b"EXEC":
                    groups.append(group)
                continue
            if name in SCRIPT_COMMANDS:
                declared = args[3 : 3 + int(args[2])] if len(args) > 2 else []
                script = _Group(f"{name.decode()} {args[1][:60]!r}", set(declared))
                groups.append(script)
                target = script
            else:
                target = _Group(" ".join(a.decode(errors="replace") for a in args[:4]))
                target.keys.update(_ORACLE.keys(args))
                groups.append(target)
            if client in multi:
                multi[client].keys.update(target.keys)
        out = []
        for g in groups:
            slots = {key_slot(k) for k in g.keys}
            if len(slots) > 1:
                shown = sorted(k.decode(errors="replace") for k in g.keys)
                out.append(f"{g.what}: keys in {len(slots)} slots: {shown}")
        return sorted(set(out))


@contextlib.contextmanager
def slot_audit(server: RedisServer) -> Iterator[SlotAudit]:
    audit = SlotAudit(server).start()
    try:
        yield audit
    finally:
        audit.stop()
