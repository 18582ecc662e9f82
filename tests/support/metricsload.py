"""Load for the metrics endpoints (tests/system/test_metrics.py, bench/metrics.py): a big SQLite
ledger made in seconds, idle connections held open, a scrape timed, a process's threads and memory."""

from __future__ import annotations

import socket
import sqlite3
import time
import urllib.request
from pathlib import Path


def big_ledger(path: Path, events: int, gates: int = 20) -> Path:
    """A real ledger file (the ledger's own schema and migrations) holding `events` stored events, by
    direct SQL (publishing a million signed events would take an hour): per gate seqs 1..n, every
    event a scan admit of its own ticket, with the movement the ledger records for it. Hashes and
    signatures are not real: only the metrics read this ledger."""
    from gated.central.ledger import Ledger

    Ledger(str(path)).close()
    per_gate = events // gates
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA synchronous = OFF")
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
            "INSERT INTO events (id, site, gate, seq, kind, ts, ticket, decision, reason, ref, result, hash, prev, "
            "signed, received_ms, body) "
            "SELECT 'g' || (i % ?) || ':' || (i / ? + 1), 'S', 'g' || (i % ?), i / ? + 1, 'scan', "
            "'2026-12-01T20:00:00.000Z', printf('%032x', i), 'admit', 'ok', NULL, NULL, 'h', 'p', 1, "
            "1796155200000, '{}' FROM n",
            (per_gate * gates, gates, gates, gates, gates),
        )
        db.execute(
            "INSERT INTO movements (id, gate, seq, ticket, zone, dir, reentry, free, ts) "
            "SELECT id, gate, seq, ticket, '', 'in', 0, 0, ts FROM events"
        )
    return path


def hold_idle(port: int, count: int) -> list[socket.socket]:
    """Up to `count` connections to 127.0.0.1:port that send nothing (one the server refuses, its
    backlog full, is tried again a few times, then left out)."""
    held = []
    for _ in range(count):
        for _attempt in range(20):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                break
            except ConnectionRefusedError:
                time.sleep(0.01)
    return held


def release(held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()


def timed_scrape(port: int, timeout: float = 30.0) -> tuple[float, bytes]:
    """(seconds, body) of one GET /metrics."""
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        body = response.read()
    return time.perf_counter() - started, body


def threads_and_memory(pid: int) -> tuple[int, int]:
    """(threads, resident kB) of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])
