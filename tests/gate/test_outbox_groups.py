"""PUBACK deletions are grouped (gated/gate/store.py ACK_GROUP_ROWS): an acknowledged row leaves
with the next write transaction, or with 64 others, or at close, never by a commit of its own per
acknowledgement; meanwhile it is neither counted nor sent again."""

from __future__ import annotations

import sqlite3

from gated.gate import store as store_module
from gated.gate.store import GateStore
from tests.conftest import SITE


def _rows(path) -> int:
    with sqlite3.connect(path) as db:  # another connection: what is committed
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def _event(store, n=0):
    return store.record_event({"kind": "state", "state": "online", "rev": 0}, 1_800_000_000_000 + n)


def test_an_acknowledged_row_leaves_with_the_next_write(tmp_path):
    path = tmp_path / "gate.db"
    with GateStore(path, site=SITE, gate="g1") as store:
        first, second = _event(store), _event(store, 1)
        store.acknowledge(first["seq"])
        assert _rows(path) == 2  # no commit of its own
        assert store.outbox_depth() == 1 and [seq for seq, _ in store.outbox()] == [second["seq"]]
        _event(store, 2)  # the next write carries the deletion
        assert _rows(path) == 2 and store.outbox_depth() == 2
        store.acknowledge(second["seq"])
    assert _rows(path) == 1  # close() flushed the last one


def test_a_full_group_goes_on_its_own(tmp_path):
    path = tmp_path / "gate.db"
    with GateStore(path, site=SITE, gate="g1") as store:
        seqs = [_event(store, i)["seq"] for i in range(store_module.ACK_GROUP_ROWS)]
        for seq in seqs[:-1]:
            store.acknowledge(seq)
        assert _rows(path) == len(seqs)
        store.acknowledge(seqs[-1])
        assert _rows(path) == 0
