"""The ledger on its own (no broker): exactly once by id, chain and signature checks, gaps,
over-admission across gates, and `gated reconcile` / `gated keys device` as a user runs them."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.central import ledger_report
from gated.central.ledger import Ledger, LedgerError
from gated.cli import main
from gated.core import events
from gated.gate.store import GateStore
from tests.conftest import SITE
from tests.support.uplink import device_keyring


@pytest.fixture
def gates(tmp_path):
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        yield g1, g2


def outbox(store) -> list[str]:
    return [event for _, event in store.outbox(0, 100000)]


def scan(store, cti: bytes | None, admit: bool, reason: str = "ok", ts=1_700_000_000_000) -> dict:
    body = {
        "ticket": cti.hex() if cti else None,
        "event": "FINAL-2026",
        "type": "general",
        "zone": "north",
        "decision": "admit" if admit else "deny",
        "reason": reason,
        "rev": 0,
        "latency_us": 0,
    }
    return store.record_scan(body, ts, admit_cti=cti if admit else None, confirmed=True)


def test_every_event_once_duplicates_dropped_and_report_clean(tmp_path, ledger_db, gates):
    g1, g2 = gates
    for _ in range(5):
        scan(g1, os.urandom(16), True)
        scan(g2, None, False, "malformed")
    g2.record_event({"kind": "alarm", "alarm": "tamper"}, 1_700_000_000_500)
    ring = device_keyring(tmp_path / "ring", g1, g2)
    with Ledger(ledger_db, keyring=ring, site=SITE) as ledger:
        first = ledger.ingest(outbox(g1) + outbox(g2))
        again = ledger.ingest(outbox(g2) + outbox(g1)[::-1])
        report = ledger.report()
    assert (first.new, first.duplicates, first.problems) == (11, 0, [])
    assert (again.new, again.duplicates) == (0, 11)
    assert report["clean"]
    assert report["gates"]["g1"]["admits"] == 5 and report["gates"]["g1"]["events"] == 5
    assert report["gates"]["g2"]["denies"] == {"malformed": 5}
    assert report["gates"]["g2"]["events"] == 6 and report["gates"]["g2"]["last_seq"] == 6
    assert all(g["signatures_checked"] for g in report["gates"].values())


def test_gaps_are_reported_whatever_the_arrival_order(tmp_path, ledger_db, gates):
    g1, _ = gates
    for _ in range(10):
        g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    rows = outbox(g1)
    arrived = [rows[i] for i in (9, 0, 1, 5, 2, 6)]  # 4, 5, 8, 9 never arrive
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.ingest(arrived)
        report = ledger.report()
    g = report["gates"]["g1"]
    assert g["gaps"] == [[4, 5], [8, 9]] and g["missing"] == 4
    assert g["chain_breaks"] == 0
    assert not g["signatures_checked"]  # no keyring given
    assert not report["clean"]


def test_events_for_another_site_are_not_taken_in_and_the_report_is_not_clean(tmp_path, ledger_db, gates):
    """A gate set up for another site (or a ledger started with the wrong --site): its events are
    quarantined, appear in no gate's gaps, and the report says so instead of reading clean."""
    g1, _ = gates
    scan(g1, os.urandom(16), True)
    with GateStore(tmp_path / "other.db", site="elsewhere", gate="g9") as other:
        scan(other, os.urandom(16), True)
        with Ledger(ledger_db, site=SITE) as ledger:
            result = ledger.ingest(outbox(g1) + outbox(other))
            report = ledger.report()
    assert result.new == 1 and "g9" not in report["gates"]
    assert report["totals"]["wrong_site"] == 1 and report["totals"]["missing"] == 0 and not report["clean"]
    assert "1 events for another site, not taken in" in ledger_report.format_report(report)


def test_tampered_forged_and_reused_events_are_caught(tmp_path, ledger_db, gates):
    g1, g2 = gates
    for _ in range(4):
        g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    rows = [json.loads(r) for r in outbox(g1)]
    ring = device_keyring(tmp_path / "ring", g1, g2)

    tampered = dict(rows[1], state="locked")  # content changed, hash kept
    stranger = Ed25519PrivateKey.generate()
    forged = events.seal(
        {"kind": "state", "state": "locked", "rev": 0},
        site=SITE,
        gate="g1",
        seq=5,
        prev=rows[3]["hash"],
        ts_ms=1_700_000_001_000,
        key=stranger,
    )
    # a chain that forks: seq 3 re-made on top of another seq 2 (say, the gate's state restored from a backup)
    fork = events.seal(
        {"kind": "state", "state": "online", "rev": 0},
        site=SITE,
        gate="g1",
        seq=3,
        prev="ab" * 32,
        ts_ms=1_700_000_000_000,
        key=g1._device_key,
    )

    with Ledger(ledger_db, keyring=ring, site=SITE) as ledger:
        ledger.ingest([tampered, forged])
        ledger.ingest([rows[0], rows[1], rows[3]])
        ledger.ingest([fork])  # arrives before the real seq 3: it takes the slot and breaks the chain both ways
        ledger.ingest([rows[2]])  # the real one conflicts with it
        report = ledger.report()
    g = report["gates"]["g1"]
    assert g["bad_hashes"] == 1 and g["bad_signatures"] == 1
    assert g["chain_breaks"] == 2  # 2 -> fork, fork -> 4
    assert g["conflicts"] == 1
    assert g["events"] == 4 and g["missing"] == 0  # the genuine seq 2 landed although a tampered copy came first
    assert report["totals"]["quarantined"] == 3
    assert not report["clean"]


def test_a_refused_event_sent_again_is_quarantined_once(tmp_path, ledger_db, gates):
    """A quarantined copy is not held, so the gate sends its event again (with its backoff, until
    the retention): a gate the ledger has a stale device key for sends every event again and again.
    Each message is kept once however often it comes; another message for the same id is kept too."""
    g1, _ = gates
    for _ in range(2):
        g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    rows = outbox(g1)
    stale = device_keyring(tmp_path / "stale", GateStore(tmp_path / "old-g1.db", site=SITE, gate="g1"))
    tampered = json.dumps(dict(json.loads(rows[1]), state="locked"))
    with Ledger(ledger_db, keyring=stale, site=SITE) as ledger:
        for _ in range(3):  # the gate's first send and two re-sends
            results = [ledger.ingest(rows), ledger.ingest([tampered])]
            assert [(r.new, r.rejected) for r in results] == [(0, 2), (0, 1)]
        kept = ledger.query("SELECT event_id, why FROM quarantine ORDER BY n")
        report = ledger.report()
    assert kept == [
        ("g1:1", "device signature does not verify"),
        ("g1:2", "device signature does not verify"),
        ("g1:2", "hash does not match content"),
    ]
    assert report["totals"]["quarantined"] == 3


def test_over_admission_across_gates_counts_rollbacks_and_ticket_entries(tmp_path, ledger_db, gates):
    g1, g2 = gates
    once, rolled_back, twice_allowed, unlimited = (os.urandom(16) for _ in range(4))
    scan(g1, once, True)
    scan(g2, once, True)  # the second gate did not know yet: over-admitted
    first = scan(g1, rolled_back, True)
    g1.record_passage(first["id"], False, 1_700_000_001_000)  # nobody passed: rolled back
    scan(g2, rolled_back, True)
    scan(g1, twice_allowed, True)
    scan(g2, twice_allowed, True)
    for _ in range(3):
        scan(g2, unlimited, True)
    csv_path = tmp_path / "tickets.csv"
    csv_path.write_text(
        "ticket_id,file,type,entries,seat,event,valid_from,valid_until\n"
        f"{twice_allowed.hex()},x.png,general,2,,FINAL-2026,0,0\n"
        f"{unlimited.hex()},y.png,staff,0,,FINAL-2026,0,0\n"
    )
    db = ledger_db
    with Ledger(db, site=SITE) as ledger:
        ledger.ingest(outbox(g1) + outbox(g2))
        without_csv = ledger.report()["over_admitted"]
        ledger.load_tickets(csv_path)
        with_csv = ledger.report()["over_admitted"]
    assert {t["ticket"] for t in without_csv} == {once.hex(), twice_allowed.hex(), unlimited.hex()}
    assert all(t["assumed"] for t in without_csv)
    assert with_csv == [{"ticket": once.hex(), "admits": 2, "allowed": 1, "assumed": True, "gates": ["g1", "g2"]}]


def test_reconcile_command_text_json_and_exit_code(tmp_path, ledger_db, gates, capsys):
    g1, _ = gates
    for _ in range(3):
        scan(g1, None, False, "expired")
    db = ledger_db
    with Ledger(db, site=SITE) as ledger:
        ledger.ingest(outbox(g1))
    assert main(["reconcile", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gates"]["g1"]["denies"] == {"expired": 3} and report["clean"]
    assert main(["reconcile", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "g1" in text and "expired 3" in text and "clean" in text
    with Ledger(db, site=SITE) as ledger:
        ledger.ingest([dict(json.loads(outbox(g1)[0]), reason="ok")])
    assert main(["reconcile", "--db", str(db)]) == 1  # a bad hash is a failed check
    assert "1 bad signatures" in capsys.readouterr().out
    assert main(["reconcile", "--db", str(tmp_path / "none.db")]) == 2


def test_keys_device_prints_the_gates_public_key(tmp_path, capsys):
    with GateStore(tmp_path / "gate.db", site=SITE, gate="g7") as store:
        expected = keys.public_pem(store.device_public_key).decode()
    assert main(["keys", "device", "--state", str(tmp_path / "gate.db")]) == 0
    out = capsys.readouterr()
    assert out.out == expected and "--name g7" in out.err
    pem = tmp_path / "g7.pub"
    pem.write_text(out.out)
    assert (
        main(["keys", "trust", "--keyring", str(tmp_path / "ring"), "--role", "device", "--name", "g7", str(pem)]) == 0
    )
    ring = keys.load_keyring(tmp_path / "ring")
    assert ring.keys[0].name == "g7" and "device" in ring.keys[0].roles


def test_one_ledger_database_per_site(tmp_path, ledger_db, gates):
    """Gate ids are unique only within a site, and ids, the (gate, seq) key and the committed progress
    are per gate: a ledger for another site refuses a database that holds this one's events (before,
    the second site's g1 events were all rejected as conflicts and its committed seq read from the first)."""
    g1, _ = gates
    scan(g1, os.urandom(16), True)
    with Ledger(ledger_db, site=SITE) as ledger:
        assert ledger.ingest(outbox(g1)).new == 1
    with pytest.raises(
        LedgerError, match=f"holds events of site '{SITE}', not 'museum-b': one ledger database per site"
    ):
        Ledger(ledger_db, site="museum-b")
    with Ledger(ledger_db, site=SITE) as ledger:  # its own site still opens it
        assert ledger.report()["gates"]["g1"]["events"] == 1


def _signed_counts(ledger) -> dict[int, list[int]]:
    """Per `signed` value (1: its own signature verified, 2: vouched for by a later one), the seqs."""
    found: dict[int, list[int]] = {}
    for seq, signed in ledger.query("SELECT seq, signed FROM events ORDER BY seq"):
        found.setdefault(signed, []).append(seq)
    return found


def test_chain_verification_vouches_for_a_run_by_its_last_signature_and_never_for_a_forgery(tmp_path, ledger_db, gates):
    """`--verify chain`: one gate's events of a batch linked by their hashes are vouched for by the
    last one's signature; a forged event (re-hashed, signed by another key) breaks the run or is
    its last, so it is judged by its own signature and refused, inside a run or on top of it."""
    g1, g2 = gates
    for _ in range(6):
        g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    rows = [json.loads(r) for r in outbox(g1)]
    ring = device_keyring(tmp_path / "ring", g1, g2)
    stranger = Ed25519PrivateKey.generate()
    forged_4 = events.seal(
        {"kind": "state", "state": "locked", "rev": 0},
        site=SITE,
        gate="g1",
        seq=4,
        prev=rows[2]["hash"],
        ts_ms=1_700_000_000_000,
        key=stranger,
    )
    on_top_7 = events.seal(
        {"kind": "state", "state": "locked", "rev": 0},
        site=SITE,
        gate="g1",
        seq=7,
        prev=rows[5]["hash"],
        ts_ms=1_700_000_000_000,
        key=stranger,
    )
    on_top_8 = events.seal(
        {"kind": "state", "state": "locked", "rev": 0},
        site=SITE,
        gate="g1",
        seq=8,
        prev=on_top_7["hash"],
        ts_ms=1_700_000_000_000,
        key=stranger,
    )
    arrived = [rows[5], on_top_8, rows[0], forged_4, rows[4], rows[1], on_top_7, rows[2]]  # no genuine seq 4 yet
    with Ledger(ledger_db, keyring=ring, site=SITE, verify="chain") as ledger:
        result = ledger.ingest(arrived)
        assert (result.new, result.rejected) == (5, 3)
        assert sorted(p["seq"] for p in result.problems if p["kind"] == "bad_signature") == [4, 7, 8]
        # runs 1-3 and 5-6: their last events' own signatures verified, the others vouched for by them
        assert _signed_counts(ledger) == {1: [3, 6], 2: [1, 2, 5]}
        assert ledger.ingest([rows[3]]).new == 1  # the genuine seq 4 was never kept out by the forgery
        report = ledger.report()
    g = report["gates"]["g1"]
    assert (g["events"], g["missing"], g["chain_breaks"], g["bad_signatures"]) == (6, 0, 0, 3)
    assert g["signatures_checked"]


@pytest.mark.parametrize("verify", ["every", "chain"])
def test_what_each_verify_mode_says_of_a_signature_swapped_inside_a_run(tmp_path, ledger_db, gates, verify, capsys):
    """The one difference between the modes, stated in docs/central.md: an event whose content is the
    gate's but whose own signature bytes are not (a relay swapped them) is refused by "every"; "chain"
    stores it, vouched for by the next event's signature over the chain, its own signature unchecked."""
    g1, g2 = gates
    for _ in range(3):
        g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    rows = [json.loads(r) for r in outbox(g1)]
    rows[1]["sig"] = rows[0]["sig"]  # a real signature of this gate, of another hash
    with Ledger(ledger_db, keyring=device_keyring(tmp_path / "ring", g1, g2), site=SITE, verify=verify) as ledger:
        result = ledger.ingest(rows)
        counts = _signed_counts(ledger)
    if verify == "every":
        assert (result.new, result.rejected) == (2, 1) and counts == {1: [1, 3]}
    else:
        assert (result.new, result.rejected) == (3, 0) and counts == {1: [3], 2: [1, 2]}
        # what chain let through, an audit after the fact finds: every row's own signature checked again
        assert main(["reconcile", "--db", ledger_db]) == 0
        capsys.readouterr()
        assert main(["reconcile", "--db", ledger_db, "--verify-signatures", str(tmp_path / "ring")]) == 1
        assert (
            "signatures checked again: 3 events, 1 whose own signature does not verify: g1:2" in capsys.readouterr().out
        )
        with Ledger(ledger_db) as ledger:
            audit = ledger.audit_signatures(keys.load_keyring(tmp_path / "ring"), only_vouched=True)
        assert audit == {"checked": 2, "bad": [{"id": "g1:2", "gate": "g1", "seq": 2}], "no_key": []}


def test_one_event_twice_or_two_events_with_one_id_in_the_same_batch(tmp_path, ledger_db, gates):
    """Within one batch (a redelivery that came with the original): the first is new, the second a
    duplicate; another event under a taken id is a conflict, whichever arrives in the batch."""
    g1, g2 = gates
    for _ in range(2):
        g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    rows = [json.loads(r) for r in outbox(g1)]
    other_2 = events.seal(
        {"kind": "state", "state": "locked", "rev": 0},
        site=SITE,
        gate="g1",
        seq=2,
        prev=rows[0]["hash"],
        ts_ms=1_700_000_000_000,
        key=g1._device_key,
    )
    with Ledger(ledger_db, keyring=device_keyring(tmp_path / "ring", g1, g2), site=SITE) as ledger:
        result = ledger.ingest([rows[0], rows[1], rows[0], other_2])
        ((stored,),) = ledger.query("SELECT hash FROM events WHERE id = 'g1:2'")
        report = ledger.report()
    assert (result.new, result.duplicates, result.rejected) == (2, 1, 1)
    assert stored == rows[1]["hash"] and report["gates"]["g1"]["conflicts"] == 1


def test_a_gate_at_the_largest_seq_is_stored_and_the_ledger_goes_on(tmp_path, ledger_db, gates):
    """seq 2^63-1, the largest any parser accepts: the chain and progress queries ask for seq + 1,
    which PostgreSQL's BIGINT cannot hold; the ledger must store it and keep going, not fail the batch."""
    g1, g2 = gates
    g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    first = json.loads(outbox(g1)[0])
    last = events.seal(
        {"kind": "state", "state": "online", "rev": 0},
        site=SITE,
        gate="g1",
        seq=events.MAX_INT,
        prev="cd" * 32,
        ts_ms=1_700_000_000_000,
        key=g1._device_key,
    )
    with Ledger(ledger_db, keyring=device_keyring(tmp_path / "ring", g1, g2), site=SITE, verify="chain") as ledger:
        assert ledger.ingest([last]).new == 1
        result = ledger.ingest([first])
        report = ledger.report()
    assert result.new == 1 and result.committed == {"g1": 1}
    assert report["gates"]["g1"]["missing"] == events.MAX_INT - 2


@pytest.mark.parametrize(
    "name, body, says",
    [
        ("missing.csv", None, "cannot read the tickets"),
        ("binary.csv", b"\xff\xfe\x00\x01", "cannot read the tickets"),
        (
            "huge.csv",
            b"ticket_id,entries\nab,99999999999999999999999\n",
            "line 2: entries 99999999999999999999999 is not in 0..2^63-1",
        ),
        ("negative.csv", b"ticket_id,entries\nab,-1\n", "line 2: entries -1 is not in 0..2^63-1"),
        ("columns.csv", b"id,n\n1,2\n", "needs ticket_id and entries columns"),
    ],
)
def test_a_bad_tickets_csv_is_a_clear_error_not_a_traceback(tmp_path, ledger_db, capsys, name, body, says):
    path = tmp_path / name
    if body is not None:
        path.write_bytes(body)
    with Ledger(ledger_db, site=SITE):
        pass  # the ledger exists
    assert main(["reconcile", "--db", ledger_db, "--tickets", str(path)]) == 2
    assert says in capsys.readouterr().err


def test_a_nul_in_any_string_of_an_event_is_refused_the_same_on_both_backends(tmp_path, ledger_db, gates):
    """An escaped NUL (\\u0000) parses into the string; PostgreSQL's text cannot hold it, so a
    PostgreSQL ledger used to fail the event's insert and quarantine it without a problem row (the
    gate's committed seq then stuck below it) while a SQLite ledger stored it. Now the reader
    refuses it as malformed everywhere, in a value or a key, sealed by the gate or not."""
    g1, g2 = gates
    g1.record_event({"kind": "state", "state": "online", "rev": 0}, 1_700_000_000_000)
    first = json.loads(outbox(g1)[0])
    nul_ref = events.seal(
        {"kind": "passage", "ref": "g1:1", "result": "passed", "zone": "no\x00rth"},
        site=SITE,
        gate="g1",
        seq=2,
        prev=first["hash"],
        ts_ms=1_700_000_000_000,
        key=g1._device_key,
    )
    nul_key = events.seal(
        {"kind": "state", "state": "online", "rev": 0, "x\x00": 1},
        site=SITE,
        gate="g1",
        seq=3,
        prev=nul_ref["hash"],
        ts_ms=1_700_000_000_000,
        key=g1._device_key,
    )
    with Ledger(ledger_db, keyring=device_keyring(tmp_path / "ring", g1, g2), site=SITE) as ledger:
        result = ledger.ingest(
            [first, json.dumps(nul_ref), json.dumps(nul_key)], topics=[f"gated/v1/{SITE}/gates/g1/events"] * 3
        )
        why = [w for (w,) in ledger.query("SELECT why FROM quarantine ORDER BY n")]
    assert (result.new, result.rejected, result.committed) == (1, 2, {"g1": 1})
    assert [p["kind"] for p in result.problems] == ["malformed", "malformed"]
    assert "'zone': not a string (at most 1024 characters, no lone surrogate or NUL)" in why[0]
    assert "with a lone surrogate or NUL" in why[1]


def test_capacities_and_ticket_entries_take_any_count_up_to_2_63_on_both_backends(tmp_path, ledger_db):
    """PostgreSQL's INTEGER stopped at 2^31-1 (a traceback from `gated ledger --capacity z=3000000000`,
    "integer out of range" for a tickets CSV): migration 4 makes both BIGINT; above 2^63-1 is refused."""
    from gated.central.occupancy import parse_capacity

    csv_path = tmp_path / "tickets.csv"
    csv_path.write_text("ticket_id,entries\n" + "ab" * 16 + ",3000000000\n")
    with Ledger(ledger_db, site=SITE) as ledger:
        ledger.set_capacity(*parse_capacity("hall=3000000000"))
        assert ledger.load_tickets(csv_path) == 1
        assert ledger.occupancy()["zones"]["hall"]["capacity"] == 3_000_000_000
        assert ledger.query("SELECT ent FROM tickets") == [(3_000_000_000,)]
    for bad in ("hall=9223372036854775808", "hall=0", "hall=-1", "hall", "ha\x00ll=5", "hall=٣"):
        with pytest.raises(ValueError, match="expected ZONE=N"):
            parse_capacity(bad)


@pytest.mark.parametrize("errcode, quarantined", [("22000", True), ("58030", False)])
def test_a_message_is_quarantined_for_its_own_values_never_for_a_failing_database(
    tmp_path, postgres, gates, errcode, quarantined
):
    """A trigger makes PostgreSQL refuse g2's event: with a data error (22000, the message's values)
    it is quarantined and g1's is stored; with a system error (58030, an I/O error: the database's
    trouble, like a lock timeout or a lost table) the batch fails and nothing is acknowledged or
    quarantined, so the broker sends it all again once the database is well."""
    import psycopg

    g1, g2 = gates
    scan(g1, os.urandom(16), True)
    scan(g2, os.urandom(16), True)
    url = postgres.database()
    batch = outbox(g1) + outbox(g2)
    with Ledger(url, site=SITE) as ledger:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '{errcode}'; END $$"
            )
            admin.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW WHEN (NEW.gate = 'g2') "
                "EXECUTE FUNCTION refuse()"
            )
        if quarantined:
            result = ledger.ingest(batch)
            assert (result.new, result.rejected) == (1, 1)
            assert "could not be stored: DataException: refused" in ledger.query("SELECT why FROM quarantine")[0][0]
            # g2's event is in no gate's gaps (nothing of g2 came after it): the report says it is not stored
            report = ledger.report()
            assert report["totals"]["missing"] == 0 and report["totals"]["unstored"] == 1 and not report["clean"]
            assert "1 events the database would not take" in ledger_report.format_report(report)
        else:
            with pytest.raises(LedgerError, match="refused"):
                ledger.ingest(batch)
            assert ledger.query("SELECT COUNT(*) FROM events")[0][0] == 0
            assert ledger.query("SELECT COUNT(*) FROM quarantine")[0][0] == 0
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("DROP TRIGGER refuse ON events")
            assert ledger.ingest(batch).new == 2  # the database is well again: the same batch goes in


def test_a_ts_that_is_no_real_time_is_malformed(tmp_path, ledger_db, gates):
    """`ts` must be a real time, not only look like one: a gate counts a peer's movement by its time
    and the ledger by the text, so month 13 would be counted by one and not the other."""
    g1, g2 = gates
    odd = events.seal(
        {"kind": "state", "state": "online", "rev": 0},
        site=SITE,
        gate="g1",
        seq=1,
        prev=events.GENESIS,
        ts_ms=1_700_000_000_000,
        key=g1._device_key,
    )
    odd = dict(odd, ts="2026-13-45T25:61:61.000Z")  # the shape's check comes before the hash's
    with Ledger(ledger_db, site=SITE) as ledger:
        result = ledger.ingest([json.dumps(odd)], topics=[f"gated/v1/{SITE}/gates/g1/events"])
        ((why,),) = ledger.query("SELECT why FROM quarantine")
    assert result.rejected == 1 and "ts missing or not a real time" in why
