"""The Cluster audit reads back exactly what a real redis-server's MONITOR shows."""

from __future__ import annotations

import random
import time

import redis

from tests.support.redis_server import redis_server
from tests.support.slot_audit import _LINE, parse_args, slot_audit


def test_monitor_lines_parse_back_to_the_arguments_sent() -> None:
    rnd = random.Random(7)
    # Every byte value (quotes, backslashes, CR/LF, control bytes), and one value as
    # large as v1.3's stored embeddings.
    sent = [
        (b"k" + bytes([n]), bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 64))))
        for n in range(256)
    ]
    sent.append((b"big", bytes(rnd.randrange(256) for _ in range(400_000))))
    with redis_server() as server, slot_audit(server) as audit:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        for key, value in sent:
            client.set(key, value)
        deadline = time.monotonic() + 10
        while (
            sum(b'"SET"' in line for line in audit.lines) < len(sent)
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        seen = []
        for line in audit.lines:
            m = _LINE.match(line)
            assert m is not None
            seen.append(parse_args(m.group(2)))
    assert [args for args in seen if args[0] == b"SET"] == [[b"SET", k, v] for k, v in sent]
