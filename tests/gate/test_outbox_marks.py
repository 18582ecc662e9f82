"""The broker's PUBACK marks are grouped (gated/gate/store.py MARKS_ROWS): a mark rides on the
gate's next write transaction (no sync of its own), or commits on its own once a group is full, and
at close; meanwhile the store's own reads see it (what the uplink counts and sends is unchanged),
and a ledger's confirmation deletes a row whose mark still waits. Another connection to the file
(what a power cut leaves) sees the committed marks only."""

from __future__ import annotations

import sqlite3

from gated.core.confirmation import Confirmation
from gated.gate import store as store_module
from gated.gate.store import GateStore

SITE = "arena"


def _event(store, i):
    return store.record_event({"kind": "state", "state": "online", "rev": 0}, 1_800_000_000_000 + i)


def _on_the_card(path) -> dict[int, int | None]:
    """seq -> broker_ms as another connection reads the file (the committed state)."""
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT seq, broker_ms FROM outbox ORDER BY seq"))


def test_a_mark_rides_on_the_next_write_and_the_store_sees_it_at_once(tmp_path):
    path = tmp_path / "gate.db"
    with GateStore(path, site=SITE, gate="g1") as store:
        first = _event(store, 0)
        store.mark_delivered([first["seq"]], 1_800_000_000_100)
        assert _on_the_card(path) == {1: None}  # not committed on its own
        assert store.outbox_counts() == (0, 1) and store.outbox_depth() == 0
        assert store.lowest_undelivered() == 2 and store.lowest_unconfirmed() == 1 and store.delivered_through() == 1
        _event(store, 1)  # the next write carries it
        assert _on_the_card(path) == {1: 1_800_000_000_100, 2: None}
        assert store.outbox_counts() == (1, 1)


def test_a_confirmation_deletes_a_row_whose_mark_still_waits(tmp_path):
    path = tmp_path / "gate.db"
    with GateStore(path, site=SITE, gate="g1") as store:
        for i in range(3):
            _event(store, i)
        store.mark_delivered([1, 2], 1_800_000_000_100)
        assert store.prune_confirmed(Confirmation(3)) == 2  # 3: never handed over, stays
        assert _on_the_card(path) == {3: None} and store.outbox_counts() == (1, 0)


def test_a_full_group_commits_on_its_own_and_close_commits_the_rest(tmp_path):
    path = tmp_path / "gate.db"
    store = GateStore(path, site=SITE, gate="g1")
    seqs = [_event(store, i)["seq"] for i in range(store_module.MARKS_ROWS + 1)]
    for seq in seqs[:-1]:
        store.mark_delivered([seq], 1_800_000_000_100)
    assert all(_on_the_card(path)[s] is not None for s in seqs[:-1])
    store.mark_delivered([seqs[-1]], 1_800_000_000_200)
    assert _on_the_card(path)[seqs[-1]] is None
    store.close()
    assert _on_the_card(path)[seqs[-1]] == 1_800_000_000_200
