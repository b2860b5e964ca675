"""Page tokens of the v1.3 backend: opaque, tamper-proof, expiring, scoped to one API key."""

from __future__ import annotations

import os

import grpc
import pytest

from classify_gateway.backends.v1_3.tokens import PageRef, mac_key, mint, question_digest, read
from classify_gateway.core.errors import GatewayError
from classify_gateway.core.tokens import MAX_TOKEN_LENGTH, token_problem

KEY = mac_key("tlk_first_key_000000000000")
NOW = 1_800_000_000.0


def ref(question: bytes, offset: int = 10) -> PageRef:
    return PageRef(question_digest(question), offset, 10, int(NOW) + 300)


def refused(key: bytes, token: str, now: float = NOW) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        read(key, token, now)
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in err.violations] == ["page_token"]
    return err


def test_a_token_names_its_page_and_carries_a_small_question() -> None:
    question = b"classes: people dancing" * 3
    token, inline = mint(KEY, ref(question), question)
    assert inline and token_problem(token) is None
    got = read(KEY, token, NOW)
    assert (got.offset, got.page_limit, got.expires_at) == (10, 10, int(NOW) + 300)
    assert got.question == question and got.digest == question_digest(question)
    assert b"dancing" not in token.encode()  # opaque: compressed, not readable text


def test_a_large_question_stays_out_of_the_token_within_the_length_rule() -> None:
    question = os.urandom(6000)  # incompressible: cannot fit
    token, inline = mint(KEY, ref(question), question)
    assert not inline and len(token) <= MAX_TOKEN_LENGTH and token_problem(token) is None
    got = read(KEY, token, NOW)
    assert got.question is None and got.digest == question_digest(question)


def test_any_changed_character_is_refused() -> None:
    question = b"q"
    token, _ = mint(KEY, ref(question), question)
    body = token[4:]
    for i in range(0, len(body), 3):
        flipped = "A" if body[i] != "A" else "B"
        forged = token[:4] + body[:i] + flipped + body[i + 1 :]
        refused(KEY, forged)


def test_a_token_of_another_api_key_is_foreign() -> None:
    question = b"q"
    token, _ = mint(KEY, ref(question), question)
    err = refused(mac_key("tlk_second_key_00000000000"), token)
    assert "this API key" in err.violations[0][1]


def test_an_expired_token_says_so() -> None:
    question = b"q"
    token, _ = mint(KEY, ref(question), question)
    assert "expired" in refused(KEY, token, now=NOW + 301).violations[0][1]


@pytest.mark.parametrize("token", ["abc", "c13.", "c13.!!!!", "c13." + "A" * 30])
def test_what_is_not_a_token_is_refused(token: str) -> None:
    refused(KEY, token)
