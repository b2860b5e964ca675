"""One page of a classification, serialized once for every reader and the page store."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from classify_gateway_proto.v1 import classify_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class Page:
    """One page as a backend produced it, shared by every stream that reads it.

    `body` is the `ClassifyResponse` serialized with `page_number` unset (that field is
    per stream, `wire`); the same bytes parse as a `GetClassifyPageResponse`. The tokens
    are the ones in `body`'s page_info, each already passing `tokens.token_problem`
    ("" for none). `expires_at` (epoch seconds, None when unknown) bounds how long the
    page store may serve the page: its tokens stop working then. `chain_id` is set by
    the page path (which chain produced it: a refreshed chain has other tokens); a
    backend leaves it "".
    """

    body: bytes
    next_token: str
    prev_token: str
    expires_at: float | None
    chain_id: str = ""
    # Turns true once a connection this page's chain was answered on carried bytes nobody
    # asked for (issue 25 item 3; the v1.2 wire's `Provenance`): the page may then be a
    # late extra answer read as this one, so the page store never keeps it, and drops it
    # if it did. It can turn true after the page was handed over: ask at every use.
    unsolicited: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    # Registers a callback for the moment `unsolicited` turns true, so that a store that
    # keeps the page where this process cannot ask the flag (Redis) drops it then.
    watch_unsolicited: Callable[[Callable[[], None]], None] | None = field(
        default=None, compare=False, repr=False
    )
    # True for a page read back from the shared state (a chain another hub published,
    # or the store), not fetched by this process: where a page came from is a property
    # of the page, since a hub can switch from following to fetching mid-chain.
    from_shared: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def from_message(
        cls,
        message: pb.ClassifyResponse | pb.GetClassifyPageResponse,
        chain_id: str = "",
        unsolicited: Callable[[], bool] | None = None,
        watch_unsolicited: Callable[[Callable[[], None]], None] | None = None,
    ) -> Page:
        """A page from either response type (fields 1 and 2 are the same; page_number,
        field 3 of ClassifyResponse, must be unset)."""
        info = message.page_info
        expires = None
        if info.HasField("page_expired_at"):
            ts = info.page_expired_at
            expires = ts.seconds + ts.nanos / 1e9
        return cls(
            message.SerializeToString(),
            info.next_page_token,
            info.prev_page_token,
            expires,
            chain_id,
            unsolicited,
            watch_unsolicited,
        )

    def suspect(self) -> bool:
        """Whether the page store must not keep or serve this page (`unsolicited`)."""
        return self.unsolicited is not None and self.unsolicited()

    def message(self, page_number: int) -> pb.ClassifyResponse:
        """A fresh ClassifyResponse for one stream (tests; the gateway sends `wire`)."""
        return pb.ClassifyResponse.FromString(self.wire(page_number))

    def wire(self, page_number: int) -> bytes:
        """This page as one stream's serialized ClassifyResponse, with its page_number.

        The shared body plus field 3 appended: a protobuf parser reads fields in any
        order, so every reader gets its own page_number without a parse and a second
        serialization of the whole page (the server's response serializer passes bytes
        through, `server.passthrough`).
        """
        if page_number <= 0:
            return self.body
        return self.body + _PAGE_NUMBER_TAG + _varint(page_number)


# ClassifyResponse.page_number: field 3, wire type 0 (varint).
_PAGE_NUMBER_TAG = bytes([3 << 3 | 0])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _ChainIds:
    """Chain ids unique across processes and replicas without a random draw per chain
    (`uuid4` reads the OS's random source): a random prefix per process, drawn again in a
    forked child, then a counter."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_CHAIN_IDS = _ChainIds()
os.register_at_fork(after_in_child=_CHAIN_IDS.reset)


def new_chain_id() -> str:
    """A new chain's id: hex, unique across the processes sharing a page store."""
    return _CHAIN_IDS.new()
