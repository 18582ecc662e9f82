"""The central pretix commands against answers pretix would not give: a small HTTP server on 127.0.0.1
plays a broken shop (the real pretix runs in tests/pretix/). Every bad answer is a message and exit 2,
and the sync's state does not move."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gated.cli import main
from tests.support.broker import free_port

EVENT_PATH = "/api/v1/organizers/org/events/ev/"


class Shop:
    """Canned answers by path (query string ignored unless the key has one); records requests."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                shop.requests.append((self.path, self.headers.get("Authorization")))
                status, body = shop.routes.get(self.path, shop.routes.get(self.path.split("?")[0], (404, b"{}")))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body, status: int = 200) -> None:
        self.routes[path] = (status, body if isinstance(body, bytes) else json.dumps(body).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text("abc123\n")
    main(["keys", "generate", "--out", "k", "--name", "rev"])
    s = Shop()
    yield s
    s.close()


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def sync(capsys, shop, *extra):
    return run(capsys, "pretix", "sync", "--url", shop.url, "--organizer", "org", "--event", "ev", "--token-file",
               "token", "--state", "sync.db", "--signing-key", "k/rev.key", "--site", "s", "--out", "out", *extra)


def page(results, next_=None):
    return {"count": len(results), "next": next_, "previous": None, "results": results}


def state_version():
    with sqlite3.connect("sync.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        outbox = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    return (row[0] if row else None), outbox


def test_unreachable_or_refusing_shop_is_a_message(shop, capsys):
    code, text = run(capsys, "pretix", "keys", "--url", f"http://127.0.0.1:{free_port()}", "--organizer", "org",
                     "--event", "ev", "--token-file", "token", "--keyring", "ring")
    assert code == 2 and "Connection refused" in text
    shop.answer(EVENT_PATH, {"detail": "Invalid token."}, status=401)
    code, text = run(capsys, "pretix", "keys", "--url", shop.url, "--organizer", "org", "--event", "ev",
                     "--token-file", "token", "--keyring", "ring")
    assert code == 2 and "HTTP 401" in text and "Invalid token" in text
    assert shop.requests[-1][1] == "Token abc123"
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": []}})
    code, text = run(capsys, "pretix", "keys", "--url", shop.url, "--organizer", "org", "--event", "ev",
                     "--device-token-file", "token", "--keyring", "ring")
    assert code == 2 and "no pretix_sig1 key yet" in text and shop.requests[-1][1] == "Device abc123"
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": ["not base64!"]}})
    assert run(capsys, "pretix", "keys", "--url", shop.url, "--organizer", "org", "--event", "ev",
               "--token-file", "token", "--keyring", "ring")[0] == 2


@pytest.mark.parametrize("revoked, problem", [
    (b"<html>oops</html>", "not JSON"),
    (b"[" * 100_000, "not JSON"),  # nested past Python's recursion limit
    ({"results": "nope"}, "no `results` list"),
    (page([{"id": 1, "created": "2026-06-01T20:00:00Z"}]), "without a text `secret`"),
    (page([{"id": 1, "secret": "abc", "created": "yesterday"}]), "not an ISO 8601 time"),
])
def test_a_malformed_answer_changes_nothing(shop, capsys, revoked, problem):
    shop.answer(EVENT_PATH + "revokedsecrets/", revoked)
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    code, text = sync(capsys, shop)
    assert code == 2 and problem in text and "run again" in text
    assert state_version() == (None, 0)


def test_blocked_entries_need_a_boolean(shop, capsys):
    shop.answer(EVENT_PATH + "revokedsecrets/", page([]))
    shop.answer(EVENT_PATH + "blockedsecrets/", page([{"secret": "abc", "updated": "2026-06-01T20:00:00Z",
                                                       "blocked": "yes"}]))
    code, text = sync(capsys, shop)
    assert code == 2 and "true/false `blocked`" in text and state_version() == (None, 0)


def test_pages_are_followed_and_the_latest_block_state_wins(shop, capsys):
    shop.answer(EVENT_PATH + "revokedsecrets/?page=1", page([{"secret": "r1", "created": "2026-06-01T20:00:00Z"}],
                                                            next_="http://elsewhere/?page=2"))
    shop.answer(EVENT_PATH + "revokedsecrets/?page=2", page([{"secret": "r2", "created": "2026-06-01T20:01:00Z"}]))
    shop.answer(EVENT_PATH + "blockedsecrets/", page([  # pretix lists newest first
        {"secret": "b1", "updated": "2026-06-01T20:05:00Z", "blocked": False},
        {"secret": "b1", "updated": "2026-06-01T20:04:00Z", "blocked": True},
        {"secret": "b2", "updated": "2026-06-01T20:03:00Z", "blocked": True}]))
    code, text = sync(capsys, shop)
    assert code == 0 and "2 revoked and 3 blocked entries read; list v1 (+3 -0); published v1" in text, text
    assert [p for p, _ in shop.requests if "revokedsecrets" in p] == [
        EVENT_PATH + "revokedsecrets/?page=1", EVENT_PATH + "revokedsecrets/?page=2"]  # never the `next` host
    shop.answer(EVENT_PATH + "revokedsecrets/", page([{"secret": "r2", "created": "2026-06-01T20:01:00Z"}]))
    code, text = sync(capsys, shop)  # the overlap reads r2 again: nothing new
    assert code == 0 and "published nothing new" in text, text
    assert any("created_since=2026-06-01T19%3A56%3A00" in p for p, _ in shop.requests[-2:])  # the cursor, less 5 min


def test_upload_counts_entries_and_a_rollback_only_by_the_admitting_gate(tmp_path):
    """A passage timeout rolls back an admission only when the admitting gate sent it (as in the
    ledger's over-admission check): a ledger file written before peers were checked strictly may
    hold another gate's timeout naming it."""
    import json
    import sqlite3

    from gated.central.ledger import Ledger
    from gated.central.pretix import admissions

    path = tmp_path / "ledger.db"
    Ledger(path).close()  # the schema, migrated
    rows = [("g1:1", "g1", 1, "scan", "admit", None, None, "a" * 32), ("g1:2", "g1", 2, "scan", "admit", None, None, "b" * 32),
            ("g1:3", "g1", 3, "passage", None, "g1:2", "timeout", None), ("g2:1", "g2", 1, "passage", None, "g1:1", "timeout", None),
            ("g9:1", "g9", 1, "scan", "admit", None, None, "c" * 32)]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO events (id, site, gate, seq, kind, ts, ticket, decision, ref, result, hash, prev, "
                       "signed, received_ms, body) VALUES (?, 's', ?, ?, ?, '2026-12-01T20:00:00.000Z', ?, ?, ?, ?, "
                       "'h', 'p', 1, 0, ?)",
                       [(i, g, q, k, t, d, r, res, json.dumps(
                           {"id": i, "gate": g, "seq": q, "kind": k, "ts": "2026-12-01T20:00:00.000Z", "event": "E",
                            "decision": d, "ref": r, "result": res, **({"dir": "out"} if g == "g9" else {})}))
                        for i, g, q, k, d, r, res, t in rows])
    # g1:2 rolled back by g1; g2 cannot undo g1:1; g9:1 is an exit scan, not an entry for pretix's list
    assert [row[0] for row in admissions(path, "E")] == ["g1:1"]
