"""A gate's chains (docs/protocol.md, "Replacing a gate"): each state of a gate, its first and any
replaced one, makes a chain of its own; a replaced gate's is a new epoch of the same gate id, with
seqs epoch * 2^40 + 1, 2, ... (gated/core/events.py). The ledger keeps them apart:

  - gaps and chain starts are per chain (a chain's first event points at 64 zeros);
  - the gate's progress (gate_progress: `contiguous`, `floor`) follows its current chain: the newest
    chain a batch started (from its base: `contiguous` = base, `floor` = base + 1; not a chain the ledger
    followed before, whose first event came late: UNKNOWN_CHAIN), or the chain of a
    floor the gate announced (a floor of another epoch than the stored one is the gate's current
    state: `newer_floor`); so `committed` and its held ranges are about that chain only, and what
    the ledger lacks below a floor is a declared loss in the floor's chain only, never the span
    below a new chain's base;
  - each chain keeps the highest floor the gate announced in it (chain_floors: gate, epoch, floor),
    so what the ledger lacked below an earlier chain's floor stays declared lost after the gate
    moved to a new chain, and the rest of that chain's gaps stay missing (FLOORS;
    gated/central/ledger_report.py, ledger_metrics.py);
  - the events of a new chain signed by a key the ledger's keyring does not (yet) trust for the
    gate are quarantined as `unapproved_key`, not as bad signatures: once the operator approves the
    new key (`gated keys enrol --replace`, which rewrites the keyring; the ledger service reloads
    it), they are taken in again (Ledger.set_keyring), and the new chain is linked to the gate;
  - the report lists each gate's chains and each replacement, and the admissions a replaced gate
    made before it had the admissions snapshot (`unsynced` scans, under until_synced = "admit").

The SQL works on SQLite and PostgreSQL alike (integer division of BIGINTs).
"""

from __future__ import annotations

from gated.core import events as ev

UNAPPROVED = "unapproved_key: a new chain of a replaced gate, signed by a device key the ledger does not trust yet"


def EPOCH_OF(column: str) -> str:  # noqa: N802 - an SQL expression, spelled like a constant
    return f"(({column}) / {1 << ev.EPOCH_SHIFT})"  # an expression too: (floor - 1) / 2^40


def CHAIN_OF(seq: str = "seq", body: str = "body") -> str:  # noqa: N802 - an SQL expression
    """The chain of a stored event: its epoch where it says one (an `epoch` field: a replaced gate's
    chain), else 0 (part 1: one chain per gate, whatever its seqs). For statements without
    parameters only (psycopg reads the % of a LIKE as a placeholder where there are parameters)."""
    return f"(CASE WHEN {body} LIKE '%\"epoch\"%' THEN {seq} / {1 << ev.EPOCH_SHIFT} ELSE 0 END)"


def keep_floors(marks: str) -> str:
    """SQL: each of the gates `marks` names keeps its current floor as its chain's (chain_floors: the
    highest per gate and epoch; a floor only rises within a chain), so it outlives the gate moving
    to another chain."""
    return (
        f"INSERT INTO chain_floors (gate, epoch, floor) SELECT gate, {EPOCH_OF('floor')}, floor FROM gate_progress "
        f"WHERE gate IN ({marks}) AND floor > 0 ON CONFLICT (gate, epoch) DO UPDATE SET floor = excluded.floor "
        "WHERE chain_floors.floor < excluded.floor"
    )


# SQL, in an UPDATE of gate_progress, with the chain's epoch as a parameter: the ledger has never followed that
# chain of the gate (every chain it made current has its floor in chain_floors: keep_floors runs after a move)
UNKNOWN_CHAIN = "NOT EXISTS (SELECT 1 FROM chain_floors c WHERE c.gate = gate_progress.gate AND c.epoch = ?)"

# Every chain's floor, (gate, floor, current_chain): the current chain's from gate_progress (current_chain 1),
# each other chain's the highest it announced (chain_floors, current_chain 0); the chain is the floor's epoch.
# Floors of 1 and less say nothing is lost.
FLOORS = (
    "SELECT gate, floor, 1 AS current_chain FROM gate_progress WHERE floor > 1 UNION ALL "
    "SELECT c.gate, c.floor, 0 AS current_chain FROM chain_floors c JOIN gate_progress p ON p.gate = c.gate "
    f"WHERE c.floor > 1 AND c.epoch <> {EPOCH_OF('p.floor')}"
)


def newer_floor(before: int | None, floor: int) -> int:
    """Of two floors one gate announced in turn (`before` the earlier, or None), the one that holds:
    in one chain the higher (a floor only rises), else the later (its status is the gate's current
    state: a replaced gate's new chain, whatever its epoch)."""
    if before is None or ev.epoch_of(before) != ev.epoch_of(floor):
        return floor
    return max(before, floor)


def chain_starts(new_events) -> list[tuple[int, str, int]]:
    """(base, gate, epoch) of each new chain (epoch >= 1) whose first event is among `new_events`."""
    out = {}
    for event in new_events:
        seq = event["seq"]
        epoch = ev.epoch_of(seq)
        if epoch and event.get("epoch") == epoch and seq == ev.epoch_base(epoch) + 1:
            out[event["gate"]] = (ev.epoch_base(epoch), event["gate"], epoch)
    return list(out.values())


def per_gate(db) -> dict[str, list[dict]]:
    """Each gate's chains in the order they started (the gate's clock): epoch, seqs, events, times."""
    found: dict[str, list[dict]] = {}
    for gate, epoch, first, last, count, first_ts, last_ts in db.execute(
        f"SELECT gate, {CHAIN_OF()}, MIN(seq), MAX(seq), COUNT(*), MIN(ts), MAX(ts) FROM events "
        f"GROUP BY gate, {CHAIN_OF()} ORDER BY gate, MIN(ts)"
    ):
        found.setdefault(gate, []).append(
            {
                "epoch": int(epoch),
                "first_seq": first,
                "last_seq": last,
                "events": count,
                "first_ts": first_ts,
                "last_ts": last_ts,
            }
        )
    return found


def replacements(db) -> list[dict]:
    """One entry per chain that followed another of the same gate."""
    out = []
    for gate, found in per_gate(db).items():
        for before, after in zip(found, found[1:]):
            out.append(
                {
                    "gate": gate,
                    "epoch": after["epoch"],
                    "first_seq": after["first_seq"],
                    "last_seq": after["last_seq"],
                    "first_ts": after["first_ts"],
                    "events": after["events"],
                    "after_epoch": before["epoch"],
                    "after_last_seq": before["last_seq"],
                    "after_last_ts": before["last_ts"],
                }
            )
    return out


def unapproved_count(db) -> int:
    return db.execute("SELECT COUNT(*) FROM quarantine WHERE why LIKE ?", (UNAPPROVED_LIKE,)).fetchone()[0]


def unsynced_admissions(db) -> list[dict]:
    """Admissions a replaced gate made before its admissions snapshot (flagged `unsynced`), each
    with the earlier admissions of the same ticket at other chains or gates, if any."""
    rows = db.execute(
        "SELECT id, gate, ticket, ts, body FROM events WHERE kind = 'scan' AND decision = 'admit' "
        "AND body LIKE ? ORDER BY gate, seq",
        ('%"unsynced":true%',),
    ).fetchall()
    out = []
    for event_id, gate, ticket, ts, _ in rows:
        earlier = [
            r[0]
            for r in db.execute(
                "SELECT e.id FROM events e WHERE e.ticket = ? AND e.kind = 'scan' AND e.decision = 'admit' AND e.id <> ? "
                "AND NOT EXISTS (SELECT 1 FROM events p WHERE p.ref = e.id AND p.gate = e.gate AND p.kind = 'passage' "
                "AND p.result = 'timeout') ORDER BY e.ts",
                (ticket, event_id),
            ).fetchall()
        ]
        out.append({"id": event_id, "gate": gate, "ticket": ticket, "ts": ts, "also_admitted": earlier})
    return out


UNAPPROVED_LIKE = "unapproved_key%"  # a parameter: psycopg reads a % in the statement as a placeholder
UNAPPROVED_ROWS = "SELECT n, body FROM quarantine WHERE why LIKE ? ORDER BY n"
# the replayed rows (n up to the last one replayed) whose message is now held (an event stored under
# its id) or kept anew (a row after the last one replayed: another reason); a message still waiting for
# its key was not kept again (Ledger._quarantine keeps a message once per reason) and stays as it was
DROP_REPLAYED = (
    "DELETE FROM quarantine WHERE why LIKE ? AND n <= ? AND (event_id IS NULL "
    "OR EXISTS (SELECT 1 FROM events e WHERE e.id = quarantine.event_id) "
    "OR EXISTS (SELECT 1 FROM quarantine q WHERE q.n > ? AND q.event_id = quarantine.event_id AND q.body = quarantine.body))"
)
