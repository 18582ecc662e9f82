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
    assert c.read_floor(status) is None


def test_a_gap_splits_at_the_floor():
    assert c.split_gap((3, 8), 5) == ((3, 4), (5, 8))
    assert c.split_gap((3, 8), 2) == (None, (3, 8))
    assert c.split_gap((3, 8), 9) == ((3, 8), None)
