"""Signed link tokens: round trip, tampering, expiry, purpose."""

import pytest

from papersift.errors import BadInput
from papersift.signing import sign, verify


def test_round_trip_and_purpose():
    token = sign("k", "unsubscribe", {"email": "a@example.org", "n": 3})
    assert verify("k", "unsubscribe", token) == {"email": "a@example.org", "n": 3}
    with pytest.raises(BadInput):
        verify("k", "confirm", token)  # made for another action
    with pytest.raises(BadInput):
        verify("other key", "unsubscribe", token)


def test_tampering_and_garbage_are_refused():
    token = sign("k", "feed", {"user": 1})
    data, expiry, mac = token.split(".")
    forged = sign("attacker", "feed", {"user": 2}).split(".")[0]
    for bad in (f"{forged}.{expiry}.{mac}", f"{data}.9999999999.{mac}", token[:-2], "", "a.b", "a.b.c.d", "💥.1.x"):
        with pytest.raises(BadInput):
            verify("k", "feed", bad)


def test_expiry():
    token = sign("k", "confirm", {"id": 1}, ttl=60, now=1000)
    assert verify("k", "confirm", token, now=1059) == {"id": 1}
    with pytest.raises(BadInput, match="expired"):
        verify("k", "confirm", token, now=1061)
    assert verify("k", "confirm", sign("k", "confirm", {}), now=10**12) == {}  # no ttl: no expiry
