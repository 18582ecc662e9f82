"""The central pretix commands against answers pretix would not give: a small HTTP server on 127.0.0.1
plays a broken shop (the real pretix runs in tests/pretix/). Every bad answer is a message and exit 2,
and the sync's state does not move."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gated.cli import main
from tests.support.broker import free_port

EVENT_PATH = "/api/v1/organizers/org/events/ev/"


class Shop:
    """Canned answers by path (query string ignored unless the key has one), or a function of the
    query; records every request with its Authorization header."""

    def __init__(self, tls: tuple[str, str] | None = None):
        self.routes: dict[str, object] = {}
        self.requests: list[tuple[str, str]] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                shop.requests.append((self.path, self.headers.get("Authorization")))
                path, _, query = self.path.partition("?")
                route = shop.routes.get(self.path, shop.routes.get(path, (404, b"{}", {})))
                if callable(route):
                    route = (200, json.dumps(route(urllib.parse.parse_qs(query))).encode(), {})
                status, body, headers = route
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *args: None  # a client that refused our certificate: nothing to say
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body, status: int = 200, headers: dict | None = None) -> None:
        self.routes[path] = (status, body if isinstance(body, bytes) else json.dumps(body).encode(), headers or {})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text("abc123\n")
    main(["keys", "generate", "--out", "k", "--name", "rev"])
    s = Shop()
    s.answer(EVENT_PATH + "orders/", page([]))  # no orders and no check-in list unless a test says otherwise
    s.answer(EVENT_PATH + "checkinlists/", page([]))
    yield s
    s.close()


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def shop_options(shop, *, token="--token-file"):
    """The shop of these tests is plain http on 127.0.0.1: --insecure-http says so."""
    return ["--url", shop.url, "--organizer", "org", "--event", "ev", token, "token", "--insecure-http"]


def keys(capsys, shop, *extra):
    return run(capsys, "pretix", "keys", *shop_options(shop), "--keyring", "ring", *extra)


def sync(capsys, shop, *extra):
    return run(
        capsys,
        "pretix",
        "sync",
        *shop_options(shop),
        "--state",
        "sync.db",
        "--signing-key",
        "k/rev.key",
        "--site",
        "s",
        "--out",
        "out",
        *extra,
    )


def page(results, next_=None):
    return {"count": len(results), "next": next_, "previous": None, "results": results}


def state_version():
    with sqlite3.connect("sync.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        outbox = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    return (row[0] if row else None), outbox


def test_unreachable_or_refusing_shop_is_a_message(shop, capsys):
    code, text = run(
        capsys,
        "pretix",
        "keys",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--organizer",
        "org",
        "--event",
        "ev",
        "--token-file",
        "token",
        "--keyring",
        "ring",
        "--insecure-http",
    )
    assert code == 2 and "Connection refused" in text
    shop.answer(EVENT_PATH, {"detail": "Invalid token."}, status=401)
    code, text = keys(capsys, shop)
    assert code == 2 and "HTTP 401" in text and "Invalid token" in text
    assert shop.requests[-1][1] == "Token abc123"
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": []}})
    code, text = run(capsys, "pretix", "keys", *shop_options(shop, token="--device-token-file"), "--keyring", "ring")
    assert code == 2 and "no pretix_sig1 key yet" in text and shop.requests[-1][1] == "Device abc123"
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": ["not base64!"]}})
    assert keys(capsys, shop)[0] == 2


@pytest.mark.parametrize(
    "revoked, problem",
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[" * 100_000, "not JSON"),  # nested past Python's recursion limit
        ({"results": "nope"}, "no `results` list"),
        (page([{"id": 1, "created": "2026-06-01T20:00:00Z"}]), "without a text `secret`"),
        (page([{"id": 1, "secret": "abc", "created": "yesterday"}]), "not an ISO 8601 time"),
    ],
)
def test_a_malformed_answer_changes_nothing(shop, capsys, revoked, problem):
    shop.answer(EVENT_PATH + "revokedsecrets/", revoked)
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    code, text = sync(capsys, shop)
    assert code == 2 and problem in text and "run again" in text
    assert state_version() == (None, 0)


def test_a_secret_no_utf_8_can_carry_does_not_stop_the_round(shop, capsys):
    """A lone surrogate in a revoked secret (JSON allows the escape, UTF-8 has no bytes for it): no
    gate reads such a code, and the round goes on with the others (it raised, every round)."""
    odd = "\ud800bad"
    shop.answer(
        EVENT_PATH + "revokedsecrets/",
        page([{"secret": "r1", "created": "2026-06-01T20:00:00Z"}, {"secret": odd, "created": "2026-06-01T20:00:01Z"}]),
    )
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    code, text = sync(capsys, shop)
    assert code == 0 and "2 revoked and 0 blocked entries read; list v1 (+2 -0)" in text, text


def test_blocked_entries_need_a_boolean(shop, capsys):
    shop.answer(EVENT_PATH + "revokedsecrets/", page([]))
    shop.answer(
        EVENT_PATH + "blockedsecrets/", page([{"secret": "abc", "updated": "2026-06-01T20:00:00Z", "blocked": "yes"}])
    )
    code, text = sync(capsys, shop)
    assert code == 2 and "true/false `blocked`" in text and state_version() == (None, 0)


def test_pages_are_followed_and_the_latest_block_state_wins(shop, capsys):
    shop.answer(
        EVENT_PATH + "revokedsecrets/?page=1",
        page([{"secret": "r1", "created": "2026-06-01T20:00:00Z"}], next_="http://elsewhere/?page=2"),
    )
    shop.answer(EVENT_PATH + "revokedsecrets/?page=2", page([{"secret": "r2", "created": "2026-06-01T20:01:00Z"}]))
    shop.answer(
        EVENT_PATH + "blockedsecrets/",
        page(
            [  # pretix lists newest first
                {"secret": "b1", "updated": "2026-06-01T20:05:00Z", "blocked": False},
                {"secret": "b1", "updated": "2026-06-01T20:04:00Z", "blocked": True},
                {"secret": "b2", "updated": "2026-06-01T20:03:00Z", "blocked": True},
            ]
        ),
    )
    code, text = sync(capsys, shop)
    assert code == 0 and "2 revoked and 3 blocked entries read; list v1 (+3 -0); published v1" in text, text
    assert [p for p, _ in shop.requests if "revokedsecrets" in p] == [
        EVENT_PATH + "revokedsecrets/?page=1",
        EVENT_PATH + "revokedsecrets/?page=2",
    ]  # never the `next` host
    shop.answer(EVENT_PATH + "revokedsecrets/", page([{"secret": "r2", "created": "2026-06-01T20:01:00Z"}]))
    code, text = sync(capsys, shop)  # the overlap reads r2 again: nothing new
    assert code == 0 and "published nothing new" in text, text
    assert any(
        "created_since=2026-06-01T19%3A56%3A00" in p for p, _ in shop.requests if "revokedsecrets" in p
    )  # the cursor, less 5 min


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
    rows = [
        ("g1:1", "g1", 1, "scan", "admit", None, None, "a" * 32),
        ("g1:2", "g1", 2, "scan", "admit", None, None, "b" * 32),
        ("g1:3", "g1", 3, "passage", None, "g1:2", "timeout", None),
        ("g2:1", "g2", 1, "passage", None, "g1:1", "timeout", None),
        ("g9:1", "g9", 1, "scan", "admit", None, None, "c" * 32),
    ]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO events (id, site, gate, seq, kind, ts, ticket, decision, ref, result, hash, prev, "
            "signed, received_ms, body) VALUES (?, 's', ?, ?, ?, '2026-12-01T20:00:00.000Z', ?, ?, ?, ?, "
            "'h', 'p', 1, 0, ?)",
            [
                (
                    i,
                    g,
                    q,
                    k,
                    t,
                    d,
                    r,
                    res,
                    json.dumps(
                        {
                            "id": i,
                            "gate": g,
                            "seq": q,
                            "kind": k,
                            "ts": "2026-12-01T20:00:00.000Z",
                            "event": "E",
                            "decision": d,
                            "ref": r,
                            "result": res,
                            **({"dir": "out"} if g == "g9" else {}),
                        }
                    ),
                )
                for i, g, q, k, d, r, res, t in rows
            ],
        )
    # g1:2 rolled back by g1; g2 cannot undo g1:1; g9:1 is an exit scan, not an entry for pretix's list
    assert [row[0] for row in admissions(path, "E")] == ["g1:1"]


# --- orders and the check-in list (gated/central/pretix_orders.py) -------------------------------


def order(code, status, *positions, modified="2026-06-01T20:00:00Z", **extra):
    return {
        "code": code,
        "status": status,
        "last_modified": modified,
        **extra,
        "positions": [{"secret": s, "canceled": c} for s, c in positions],
    }


def revoked_ids(out_dir):
    import cbor2

    from gated.core import cose

    ids = set()
    for path in sorted(out_dir.glob("rev-*.cose"), key=lambda p: int(p.stem.split("-")[1].split(".")[0])):
        body = cbor2.loads(cose.parse(path.read_bytes()).payload)
        ids = (ids | set(body[4])) - set(body[5]) if body[3] else set(body[4])
    return ids


def test_cancelled_orders_and_positions_are_revoked_and_a_reactivated_order_is_not(shop, capsys, tmp_path):
    from gated.core.pretix_secret import ticket_id

    shop.answer(EVENT_PATH + "revokedsecrets/", page([]))
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    shop.answer(
        EVENT_PATH + "orders/",
        page(
            [
                order("A", "c", ("sa", False)),
                order("B", "p", ("sb1", False), ("sb2", True)),
                order("C", "n", ("sc", False)),
                order("D", "n", ("sd", False), require_approval=True),
                order("E", "n", ("se", False), valid_if_pending=True),
                order("F", "e", ("sf", False)),
            ]
        ),
    )
    code, text = sync(capsys, shop)
    assert code == 0 and "6 changed orders read (3 tickets cancelled, 1 unpaid, 1 awaiting approval)" in text, text
    assert "no check-in list in pretix" in text
    assert revoked_ids(tmp_path / "out") == {ticket_id(s) for s in ("sa", "sb2", "sf")}
    shop.answer(EVENT_PATH + "orders/", page([order("A", "p", ("sa", False), modified="2026-06-02T10:00:00Z")]))
    code, text = sync(capsys, shop)  # the order was reactivated in pretix
    assert code == 0 and "(+0 -1); published v2" in text, text
    assert revoked_ids(tmp_path / "out") == {ticket_id(s) for s in ("sb2", "sf")}
    assert any("modified_since=2026-06-01T19%3A55%3A00" in p for p, _ in shop.requests if "orders" in p)
    shop.answer(EVENT_PATH + "orders/", page([{"code": "G", "status": "x", "positions": []}]))
    code, text = sync(capsys, shop)
    assert code == 2 and "without code, status or positions" in text and "run again" in text


def test_the_check_in_list_is_signed_only_when_it_changed_and_never_with_rules_a_gate_cannot_evaluate(
    shop, capsys, tmp_path
):
    shop.answer(EVENT_PATH + "revokedsecrets/", page([]))
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    shop.answer(
        EVENT_PATH,
        {
            "timezone": "Europe/Berlin",
            "date_from": "2026-06-01T18:00:00+02:00",
            "date_to": None,
            "date_admission": None,
        },
    )
    shop.answer(EVENT_PATH + "questions/", page([{"ask_during_checkin": True, "items": [5]}]))
    gates = {
        "id": 3,
        "name": "Gates",
        "all_products": True,
        "limit_products": [],
        "include_pending": False,
        "allow_multiple_entries": False,
        "allow_entry_after_exit": True,
        "exit_all_at": None,
        "subevent": None,
        "rules": {"<": [{"var": "entries_today"}, 1]},
    }
    shop.answer(EVENT_PATH + "checkinlists/", page([gates, {**gates, "id": 4, "name": "VIP"}]))
    code, text = sync(capsys, shop)
    assert code == 2 and "several" in text and "--list" in text
    code, text = sync(capsys, shop, "--list", "3")
    assert code == 0 and "check-in list 'Gates' v1 published" in text, text
    first = (tmp_path / "out" / "checkin-list.cose").read_bytes()
    code, text = sync(capsys, shop, "--list", "3")
    assert code == 0 and "check-in list 'Gates' v1" in text and "v1 published" not in text
    assert (tmp_path / "out" / "checkin-list.cose").read_bytes() == first
    shop.answer(EVENT_PATH + "checkinlists/", page([{**gates, "rules": {"weekday_is": [6]}}]))
    code, text = sync(capsys, shop, "--list", "3")
    assert code == 2 and "unknown operator 'weekday_is'" in text and "nothing was sent" in text
    assert (tmp_path / "out" / "checkin-list.cose").read_bytes() == first
    shop.answer(EVENT_PATH + "checkinlists/", page([{**gates, "allow_multiple_entries": True}]))
    code, text = sync(capsys, shop, "--list", "3")
    assert code == 0 and "check-in list 'Gates' v2 published" in text, text


LIST = {"id": 3, "name": "Gates", "all_products": True, "rules": {}}


def a_list_shop(shop, checkinlists=None, questions=()):
    shop.answer(EVENT_PATH + "revokedsecrets/", page([]))
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    shop.answer(EVENT_PATH, {"timezone": "UTC", "date_from": "2026-06-01T18:00:00Z"})
    shop.answer(EVENT_PATH + "questions/", page(list(questions)))
    shop.answer(EVENT_PATH + "checkinlists/", page(checkinlists or [LIST]))


@pytest.mark.parametrize(
    "checkinlists, questions, problem",
    [
        ([{**LIST, "id": 1}, {**LIST, "id": None}], [], "`id` is not an id"),
        ([{**LIST, "id": 2**64}], [], "`id` is not an id"),
        ([LIST], [{"id": 9, "ask_during_checkin": True, "items": 7}], "question 9: `items` is not a list of ids"),
        ([{**LIST, "all_products": False, "limit_products": [True]}], [], "`limit_products` is not a list of ids"),
        ([{**LIST, "subevent": True}], [], "`subevent` is not an id"),
        ([{**LIST, "subevent": "12"}], [], "`subevent` is not an id"),
        # every field well typed, but a gate id no gate can store: the gates' own reader says so
        ([{**LIST, "rules": {"==": [{"var": "gate"}, {"lookup": ["gate", str(2**64), "North"]}]}}], [], "gates (7)"),
    ],
)
def test_a_malformed_check_in_list_is_refused_naming_its_field_and_never_signed(
    shop, capsys, tmp_path, checkinlists, questions, problem
):
    """pretix's answers are read with the gate's own types: a list a gate would refuse is never
    signed as a new version (the gates would keep the old one while the sync says published)."""
    a_list_shop(shop, checkinlists, questions)
    code, text = sync(capsys, shop, "--list", "3" if checkinlists[0]["id"] != 2**64 else str(2**64))
    assert code == 2 and problem in text and "run again" in text and "Traceback" not in text, text
    assert not (tmp_path / "out" / "checkin-list.cose").exists()
    with sqlite3.connect("sync.db") as db:
        assert db.execute("SELECT COUNT(*) FROM checkin_lists").fetchone()[0] == 0
    a_list_shop(shop)
    code, text = sync(capsys, shop, "--list", "3")
    assert code == 0 and "check-in list 'Gates' v1 published" in text, text


def test_the_sync_service_outlives_a_malformed_answer(shop, tmp_path):
    """`--every`: a round that meets a malformed answer is said, and the next round goes on."""
    import signal
    import subprocess
    import sys
    import time

    from tests.pretix.test_pretix_venue import ROOT

    a_list_shop(shop, [{**LIST, "id": 1}, {**LIST, "id": None}])
    argv = ["pretix", "sync", *shop_options(shop), "--state", "sync.db", "--signing-key", "k/rev.key"]
    argv += ["--site", "s", "--out", "out", "--list", "3", "--every", "0.2s"]
    with open("service.out", "w") as out, open("service.err", "w") as err:
        service = subprocess.Popen(
            [sys.executable, "-m", "gated.cli", *argv],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while "`id` is not an id" not in (tmp_path / "service.err").read_text() and time.monotonic() < deadline:
            assert service.poll() is None, (tmp_path / "service.err").read_text()
            time.sleep(0.1)
        a_list_shop(shop, [{**LIST, "id": 1}, LIST])  # pretix answers well again
        while not (tmp_path / "out" / "checkin-list.cose").exists() and time.monotonic() < deadline:
            assert service.poll() is None, (tmp_path / "service.err").read_text()
            time.sleep(0.1)
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    err = (tmp_path / "service.err").read_text()
    assert service.returncode == 0 and "`id` is not an id" in err and "Traceback" not in err, err
    assert (tmp_path / "out" / "checkin-list.cose").exists() and "stopped" in (tmp_path / "service.out").read_text()


def test_a_round_that_fails_unforeseen_does_not_end_the_service(capsys):
    """Whatever a round raises (our own fault included) is said; SIGTERM still ends the service."""
    import argparse
    import signal

    from gated.cli.pretix import _every

    rounds = []

    def round_():
        rounds.append(1)
        if len(rounds) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("a fault nobody foresaw")

    assert _every(argparse.Namespace(event="ev"), 0.01, round_) == 0
    text = capsys.readouterr()
    assert len(rounds) == 3 and text.err.count("RuntimeError: a fault nobody foresaw") == 3, text
    assert text.out.rstrip().endswith("stopped")


@pytest.mark.parametrize(
    "field, value", [("organizer", ["org"]), ("name", {"x": 1}), ("device_id", "7"), ("device_id", True)]
)
def test_a_device_handshake_answer_of_the_wrong_types_is_refused_naming_the_field(shop, capsys, tmp_path, field, value):
    answer = {"api_token": "dev-token", "organizer": "org", "device_id": 7, "name": "Gates", field: value}
    shop.answer("/api/v1/device/initialize", answer)
    code, text = run(capsys, "pretix", "init", "--url", shop.url, "--token", "once", "--insecure-http")
    assert code == 2 and f"`{field}` is not" in text and "dev-token" not in text, text
    assert not (tmp_path / "pretix-device.token").exists()
    shop.answer(
        "/api/v1/device/initialize", {**answer, field: {"organizer": "org", "name": "Gates", "device_id": 7}[field]}
    )
    code, text = run(capsys, "pretix", "init", "--url", shop.url, "--token", "once", "--insecure-http")
    assert code == 0 and (tmp_path / "pretix-device.token").read_text() == "dev-token\n", text


def test_a_list_that_could_not_be_published_goes_out_on_the_next_run(shop, capsys, tmp_path, broker):
    """Cut off from the broker: nothing is lost, the next run publishes the list, retained, and then nothing new."""
    from gated.topics import checkin_list_topic
    from tests.pretix.test_pretix_venue import retained

    shop.answer(EVENT_PATH + "revokedsecrets/", page([]))
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    shop.answer(EVENT_PATH, {"timezone": "UTC", "date_from": "2026-06-01T18:00:00Z"})
    shop.answer(EVENT_PATH + "questions/", page([]))
    shop.answer(EVENT_PATH + "checkinlists/", page([{"id": 3, "name": "Gates", "all_products": True, "rules": {}}]))
    shop.answer(EVENT_PATH + "orders/", page([order("C", "n", ("sc", False))]))
    code, text = sync(capsys, shop, "--broker", f"mqtt://127.0.0.1:{free_port()}")
    assert code == 2 and "run again" in text
    code, text = sync(capsys, shop, "--broker", broker.url)
    assert code == 0 and "check-in list 'Gates' v1 published" in text, text
    assert retained(broker, checkin_list_topic("s")) == (tmp_path / "out" / "checkin-list.cose").read_bytes()
    code, text = sync(capsys, shop, "--broker", broker.url)
    assert code == 0 and "published nothing new; check-in list 'Gates' v1\n" in text, text


# --- the connection: https only, the token on the shop's origin, bounded answers -----------------


def pretix_key():
    """(the event resource's base64 of a PEM public key, its SHA-256 fingerprint), as pretix offers one."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gated import keys as keyring

    public = Ed25519PrivateKey.generate().public_key()
    return base64.b64encode(keyring.public_pem(public)).decode(), keyring.fingerprint(public)


def test_a_plain_http_shop_is_refused_before_anything_is_sent(shop, capsys):
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": [pretix_key()[0]]}})
    code, text = run(
        capsys,
        "pretix",
        "keys",
        "--url",
        shop.url,
        "--organizer",
        "org",
        "--event",
        "ev",
        "--token-file",
        "token",
        "--keyring",
        "ring",
    )
    assert code == 2 and "plain http" in text and "https://" in text, text
    assert shop.requests == [] and not os.path.exists("ring")


def test_an_https_shop_must_show_a_certificate_the_machine_trusts(shop, capsys, monkeypatch):
    """The shop's certificate is checked against the system's CAs (or SSL_CERT_FILE): one they do not
    vouch for ends the run before the token is sent."""
    from gated.central.certs import make_site_certs

    make_site_certs("tls", [])  # a CA of our own and a certificate for 127.0.0.1
    secure = Shop(tls=("tls/server.crt", "tls/server.key"))
    try:
        secure.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": [pretix_key()[0]]}})
        argv = [
            "pretix",
            "keys",
            "--url",
            secure.url,
            "--organizer",
            "org",
            "--event",
            "ev",
            "--token-file",
            "token",
            "--keyring",
            "ring",
        ]
        code, text = run(capsys, *argv)
        assert code == 2 and "CERTIFICATE_VERIFY_FAILED" in text and secure.requests == [], text
        monkeypatch.setenv("SSL_CERT_FILE", "tls/ca.crt")  # the machine trusts the shop's CA
        code, text = run(capsys, *argv)
        assert code == 0 and "trusted pretix-ev-" in text and secure.requests == [(EVENT_PATH, "Token abc123")], text
    finally:
        secure.close()


@pytest.mark.parametrize("elsewhere", ["another port", "another host", "https"])
def test_a_redirect_to_another_origin_never_carries_the_token(shop, capsys, elsewhere):
    other = Shop()
    try:
        other.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": [pretix_key()[0]]}})
        target = {
            "another port": other.url,
            "another host": other.url.replace("127.0.0.1", "localhost"),
            "https": shop.url.replace("http:", "https:"),
        }[elsewhere]
        shop.answer(EVENT_PATH, b"", status=302, headers={"Location": target + EVENT_PATH})
        code, text = keys(capsys, shop)
        assert code == 2 and "redirect to" in text and "refused" in text, text
        assert other.requests == []  # the second server never saw the token, nor anything else
    finally:
        other.close()


def test_a_redirect_within_the_shop_is_followed_with_the_token(shop, capsys):
    shop.answer(EVENT_PATH, b"", status=301, headers={"Location": "/moved/"})
    shop.answer("/moved/", {"valid_keys": {"pretix_sig1": [pretix_key()[0]]}})
    code, text = keys(capsys, shop)
    assert code == 0 and "trusted pretix-ev-" in text, text
    assert shop.requests[-1] == ("/moved/", "Token abc123")


@pytest.mark.parametrize("with_length", [True, False])
def test_an_answer_over_the_size_cap_is_refused(shop, capsys, with_length):
    from gated.central.pretix_http import MAX_BYTES

    body = json.dumps(page([])).encode() + b" " * MAX_BYTES  # well-formed JSON, only too long
    shop.answer(EVENT_PATH + "revokedsecrets/", body, headers={"Content-Length": str(len(body))} if with_length else {})
    shop.answer(EVENT_PATH + "blockedsecrets/", page([]))
    code, text = sync(capsys, shop)
    assert code == 2 and f"over the {MAX_BYTES}" in text and state_version() == (None, 0), text


def test_a_silent_shop_times_out():
    import socket
    import time

    from gated.central.pretix import PretixClient, PretixError

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the kernel's backlog), never answers
        client = PretixClient(
            f"http://127.0.0.1:{silent.getsockname()[1]}", "org", "Token t", insecure_http=True, timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(PretixError, match="timed out"):
            client.get("events/ev/")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "where, start",
    [
        ("body", b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"),
        ("head", b"HTTP/1.0 200 OK\r\nX-Slow: "),
    ],
)
def test_a_dripping_shop_is_cut_off_at_the_deadline(where, start):
    """A byte every 50 ms: no read ever waits for the timeout, the deadline ends it wherever it is."""
    import socket
    import time

    from gated.central.pretix import PretixClient, PretixError

    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as dripping:

        def drip():
            conn, _ = dripping.accept()
            conn.recv(65536)
            conn.sendall(start)
            while not stop.wait(0.05):
                try:
                    conn.sendall(b" " if where == "body" else b"a")
                except OSError:
                    break
            conn.close()

        threading.Thread(target=drip, daemon=True).start()
        try:
            client = PretixClient(
                f"http://127.0.0.1:{dripping.getsockname()[1]}",
                "org",
                "Token t",
                insecure_http=True,
                timeout=0.5,
                deadline=1.0,
            )
            started = time.monotonic()
            with pytest.raises(PretixError, match="no complete answer within 1 s"):
                client.get("events/ev/")
            assert time.monotonic() - started < 5
        finally:
            stop.set()


# --- the sync's cursors and times pretix can send ------------------------------------------------


def filtered(entries: list[dict], since_key: str, time_key: str):
    """A list resource as pretix serves it: rows whose time is at or after `since_key`'s."""
    from datetime import datetime, timezone

    def parse(text):  # pretix's database has a wider calendar than Python's: its edges stand in
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:
            return (datetime.max if moment.year > 1 else datetime.min).replace(tzinfo=timezone.utc)

    def route(query):
        since = query.get(since_key, [None])[0]
        return page([e for e in entries if since is None or parse(e[time_key]) >= parse(since)])

    return route


def iso_now(minutes: float = 0.0) -> str:
    import time
    from datetime import datetime, timezone

    return datetime.fromtimestamp(time.time() + 60 * minutes, timezone.utc).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "resource, since_key, time_key, future",
    [
        ("revokedsecrets/", "created_since", "created", "9999-12-31T23:59:59Z"),
        ("blockedsecrets/", "updated_since", "updated", "9999-12-31T23:00:00-05:00"),  # off the calendar in UTC
    ],
)
def test_a_time_from_the_future_does_not_hide_later_changes(shop, capsys, resource, since_key, time_key, future):
    from structlog.testing import capture_logs

    entries = [{"secret": "x1", time_key: future, "blocked": True}]
    shop.routes[EVENT_PATH + resource] = filtered(entries, since_key, time_key)
    other = "blockedsecrets/" if resource == "revokedsecrets/" else "revokedsecrets/"
    shop.answer(EVENT_PATH + other, page([]))
    with capture_logs() as logs:
        code, text = sync(capsys, shop)
    assert code == 0 and "list v1 (+1 -0); published v1" in text, text
    warned = [e for e in logs if e["log_level"] == "warning" and "future" in e["event"]]
    assert warned and future in warned[0]["record"] and warned[0]["field"] == time_key
    with sqlite3.connect("sync.db") as db:
        cursor = db.execute(
            "SELECT value FROM meta WHERE key = ?", ("revoked_since" if time_key == "created" else "blocked_since",)
        ).fetchone()[0]
    assert cursor < iso_now(-4)  # at most the local time less the overlap
    entries.insert(0, {"secret": "x2", time_key: iso_now(-1), "blocked": True})  # a cancellation a minute ago
    code, text = sync(capsys, shop)
    assert code == 0 and "(+1 -0); published v2" in text, text


def test_year_one_is_used_not_a_traceback(shop, capsys):
    revoked = [{"secret": "r1", "created": "0001-01-01T00:00:00Z"}]
    blocked = [{"secret": "b1", "updated": "0001-01-01T00:30:00+01:00", "blocked": True}]  # off the calendar in UTC
    shop.routes[EVENT_PATH + "revokedsecrets/"] = filtered(revoked, "created_since", "created")
    shop.routes[EVENT_PATH + "blockedsecrets/"] = filtered(blocked, "updated_since", "updated")
    code, text = sync(capsys, shop)
    assert code == 0 and "list v1 (+2 -0); published v1" in text, text
    revoked.insert(0, {"secret": "r2", "created": iso_now(-1)})
    code, text = sync(capsys, shop)
    assert code == 0 and "(+1 -0); published v2" in text, text


def test_a_changed_issuer_key_is_refused_without_replace(shop, capsys):
    from pathlib import Path

    from gated import keys as keyring

    (first, fp1), (second, fp2) = pretix_key(), pretix_key()
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": [first]}})
    code, text = keys(capsys, shop)
    assert code == 0 and f"sha256 {fp1}" in text and f"kid {fp1[:16]}" in text, text
    code, text = keys(capsys, shop)
    assert code == 0 and "already trusted" in text and fp1 in text
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": [second]}})  # a shop that is not the one trusted
    code, text = keys(capsys, shop)
    assert code == 2 and "--replace" in text and fp1 in text and fp2 in text, text
    assert [key.kid.hex() for key in keyring.load_keyring("ring").keys] == [fp1[:16]]
    code, text = keys(capsys, shop, "--replace")
    assert code == 0 and f"dropped pretix-ev-{fp1[:8]}" in text and f"trusted pretix-ev-{fp2[:8]}" in text, text
    assert [key.kid.hex() for key in keyring.load_keyring("ring").keys] == [fp2[:16]]
    assert not Path(f"ring/pretix-ev-{fp1[:8]}.pub").exists()


def test_the_keys_of_an_event_with_a_longer_name_are_another_event_s(shop, capsys):
    """`--event final` must not take `final-2026`'s pretix keys for its own (nor drop them)."""
    longer = "/api/v1/organizers/org/events/ev-2026/"
    (first, fp1), (second, fp2) = pretix_key(), pretix_key()
    shop.answer(longer, {"valid_keys": {"pretix_sig1": [first]}})
    shop.answer(EVENT_PATH, {"valid_keys": {"pretix_sig1": [second]}})
    code, text = run(
        capsys, "pretix", "keys", *shop_options(shop)[:5], "ev-2026", *shop_options(shop)[6:], "--keyring", "ring"
    )
    assert code == 0, text
    code, text = keys(capsys, shop)  # event ev: nothing trusted for it yet
    assert code == 0 and f"trusted pretix-ev-{fp2[:8]}" in text and fp1 not in text, text


def test_the_keys_of_an_event_with_pretix_s_longest_slug_are_trusted(shop, capsys):
    """A pretix slug has up to 50 characters: its keys are named pretix-<slug>-<8 hex> (66), a name
    the keyring takes (key names were at most 64: the key of such an event could not be trusted)."""
    slug = "summer-open-air-festival-2026-main-stage-weekend-1"
    assert len(slug) == 50
    first, fp1 = pretix_key()
    shop.answer(f"/api/v1/organizers/org/events/{slug}/", {"valid_keys": {"pretix_sig1": [first]}})
    code, text = run(
        capsys, "pretix", "keys", *shop_options(shop)[:5], slug, *shop_options(shop)[6:], "--keyring", "ring"
    )
    assert code == 0 and f"trusted pretix-{slug}-{fp1[:8]}" in text, text


def test_an_answer_cut_short_of_its_content_length_is_refused():
    """The connection closed before the Content-Length the head announced: an incomplete answer,
    said as one, even when what arrived parses as JSON."""
    import socket

    from gated.central.pretix import PretixClient, PretixError

    body = b'{"valid_keys": {"pretix_sig1": []}}'
    with socket.create_server(("127.0.0.1", 0)) as short:

        def answer():
            conn, _ = short.accept()
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (len(body) + 100)
                + body
            )
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        client = PretixClient(
            f"http://127.0.0.1:{short.getsockname()[1]}", "org", "Token t", insecure_http=True, timeout=5
        )
        with pytest.raises(PretixError, match=f"the answer ended after {len(body)} of its {len(body) + 100} bytes"):
            client.get("events/ev/")


def test_a_shop_url_with_a_user_and_password_is_refused_without_printing_them(shop, capsys):
    """user:password@ in the URL would be ignored (the token authenticates), then printed in every
    message naming a request; it is refused up front, the password not repeated."""
    shop.answer(EVENT_PATH, {"detail": "Invalid token."}, status=401)
    url = shop.url.replace("http://", "http://staff:s3cret-pw@")
    code, text = run(
        capsys,
        "pretix",
        "keys",
        "--url",
        url,
        "--organizer",
        "org",
        "--event",
        "ev",
        "--token-file",
        "token",
        "--keyring",
        "ring",
        "--insecure-http",
    )
    assert code == 2 and "s3cret-pw" not in text and "user" in text, text
    assert shop.requests == []


@pytest.mark.parametrize("location", ["http://[::1", "//[::1/x", "https://[fe80::1%/x"])
def test_a_redirect_to_a_malformed_url_is_a_message(shop, capsys, location):
    shop.answer(EVENT_PATH, b"", status=302, headers={"Location": location})
    code, text = keys(capsys, shop)
    assert code == 2 and "redirect" in text, text
    assert len(shop.requests) == 1


def test_a_malformed_shop_url_is_a_message(shop, capsys):
    code, text = run(
        capsys,
        "pretix",
        "keys",
        "--url",
        "https://[::1",
        "--organizer",
        "org",
        "--event",
        "ev",
        "--token-file",
        "token",
        "--keyring",
        "ring",
    )
    assert code == 2 and "https://host[:port][/path]" in text, text
