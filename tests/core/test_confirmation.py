"""The ledger's confirmation and the gate's floor (gated/core/confirmation.py): hostile messages are
refused with a reason (or no floor), never an exception of another kind."""

from __future__ import annotations

import pytest

from gated.core import confirmation as c


def test_round_trip_and_what_it_covers():
    body = c.read(c.encode(3, [(5, 6), (9, 9)]))
    assert (body.seq, body.held, body.fresh_format) == (3, ((5, 6), (9, 9)), True)
    assert [n for n in range(1, 11) if body.covers(n)] == [1, 2, 3, 5, 6, 9]
    assert body.clipped(5) == c.Confirmation(3, ((5, 5),), True)
    assert c.read(b'{"seq": 7}') == c.Confirmation(7)  # an older ledger's


def test_only_what_is_about_the_gate_s_own_chain_counts():
    base3, base7 = 3 << 40, 7 << 40  # a replaced gate's chain 3; the ledger following its old chain 7
    other = c.Confirmation(base7 + 3, ((base7 + 5, base7 + 6),), True)
    assert other.of_chain(3) == c.Confirmation(base3, (), True)  # none of chain 3: not "up to 7<<40+3"
    assert not any(other.of_chain(3).clipped(base3 + 9).covers(base3 + n) for n in range(1, 10))
    mixed = c.Confirmation(base3 + 2, ((base3 + 4, base3 + 4), (base7 + 1, base7 + 2)), True)
    assert mixed.of_chain(3) == c.Confirmation(base3 + 2, ((base3 + 4, base3 + 4),), True)
    assert c.Confirmation(0).of_chain(3) == c.Confirmation(base3)  # a ledger that knows no chain 3 yet
    assert c.Confirmation(5, ((7, 8),)).of_chain(0) == c.Confirmation(5, ((7, 8),))  # a gate never replaced
    assert c.Confirmation(base3 + 2).of_chain(0) == c.Confirmation(0)
    # hostile: a range across two chains, the highest seq there is, a range of the top chain
    assert c.Confirmation(base3, ((base3 + 2, base7 + 1),), True).of_chain(3) == c.Confirmation(base3, (), True)
    top = (1 << 63) - 1
    assert c.Confirmation(top, ((top, top),)).of_chain(3) == c.Confirmation(base3)
    assert c.read(c.encode(base3 + 1, [(base3 + 3, top)])).of_chain(3) == c.Confirmation(base3 + 1, (), True)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff",
        b"[]",
        b'{"seq": -1}',
        b'{"seq": true}',
        b'{"seq": 1.0}',
        b'{"seq": 9223372036854775808}',
        b'{"seq": 1, "held": {}}',
        b'{"seq": 1, "held": [[2, 3]]}',
        b'{"seq": 1, "held": [[4, 3]]}',
        b'{"seq": 1, "held": [[3, 4], [5, 6]]}',
        b'{"seq": 1, "held": [[3]]}',
        b'{"seq": 1, "held": [[3, "4"]]}',
        b'{"seq": 0, "held": [' + b",".join(b"[%d, %d]" % (3 * i + 2, 3 * i + 2) for i in range(65)) + b"]}",
        b"[" * 100_000 + b"]" * 100_000,
        b" " * 9000,
    ],
)
def test_a_bad_confirmation_is_refused(payload):
    with pytest.raises(c.ConfirmationRejected):
        c.read(payload)


def test_it_must_name_the_gate_and_site_when_asked():
    text = b'{"seq": 1, "held": [], "site": "arena", "gate": "g1"}'
    assert c.read(text, site="arena", gate="g1").seq == 1
    for site, gate in (("arena", "g2"), ("other", "g1")):
        with pytest.raises(c.ConfirmationRejected):
            c.read(text, site=site, gate=gate)


@pytest.mark.parametrize(
    "status",
    [
        b"",
        b"\xff",
        b"[]",
        b'{"floor": 0}',
        b'{"floor": true}',
        b'{"floor": "3"}',
        b'{"state": "online"}',
        b"[" * 100_000,
        b'{"floor": 1}' + b" " * 70_000,
    ],
)
def test_no_floor_from_a_status_that_has_none(status):
    assert c.read_floor(status, site="arena", gate="g1", keyring=_keyring()[1]) is None


def _keyring():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gated.core.signed import Keyring, trusted

    g1, g2, issuer = (Ed25519PrivateKey.generate() for _ in range(3))
    ring = Keyring(
        (
            trusted("g1", g1.public_key(), ["device"]),
            trusted("g2", g2.public_key(), ["device"]),
            trusted("box-office", issuer.public_key(), ["issuer"]),
        )
    )
    return {"g1": g1, "g2": g2, "issuer": issuer}, ring


def _status(floor, sig):
    import json

    return json.dumps({"state": "online", "floor": floor, "floor_sig": sig}).encode()


def test_a_floor_counts_only_signed_by_the_gates_own_device_key():
    keys, ring = _keyring()
    good = _status(7, c.seal_floor("arena", "g1", 7, keys["g1"]))
    assert c.read_floor(good, site="arena", gate="g1", keyring=ring) == 7
    refused = {
        "unsigned": (b'{"floor": 7}', "g1", "arena", ring),
        "other_gate": (_status(7, c.seal_floor("arena", "g2", 7, keys["g2"])), "g1", "arena", ring),
        "unknown_key": (_status(7, c.seal_floor("arena", "g1", 7, keys["issuer"])), "g1", "arena", ring),
        "bad_signature": (_status(9, c.seal_floor("arena", "g1", 7, keys["g1"])), "g1", "arena", ring),
        "malformed": (_status(7, "not base64!"), "g1", "arena", ring),
    }
    refused["other site"] = (good, "g1", "elsewhere", ring)  # a floor is about one site's gate
    refused["no keyring"] = (good, "g1", "arena", None)
    for why, (status, gate, site, keyring) in refused.items():
        with pytest.raises(c.FloorRejected) as caught:
            c.read_floor(status, site=site, gate=gate, keyring=keyring)
        assert why in (caught.value.code, "other site", "no keyring"), why
    for junk in (7, [], {"a": 1}, "A" * 5000, base64_of(b"\x84" + b"\x40" * 3)):
        with pytest.raises(c.FloorRejected):
            c.read_floor(_status(7, junk), site="arena", gate="g1", keyring=ring)


def base64_of(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_a_gap_splits_at_the_floor():
    assert c.split_gap((3, 8), 5) == ((3, 4), (5, 8))
    assert c.split_gap((3, 8), 2) == (None, (3, 8))
    assert c.split_gap((3, 8), 9) == ((3, 8), None)
