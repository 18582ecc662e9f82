"""The check-in list a gate holds (gated/gate/checkinlists.py) and `gated verify --checkin-list`: a desk
answers as a gate holding the venue's pretix list would, history included (--state, --record, --at)."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.cli import main
from gated.core import checkinlist
from gated.core.pretix_secret import Fields, encode_secret
from gated.gate import checkinlists, health
from gated.gate.store import GateStore

EVENT = "final-2026"
SETTINGS = {
    "id": 3,
    "name": "Weekend",
    "include_pending": False,
    "allow_multiple_entries": True,
    "allow_entry_after_exit": True,
    "all_products": True,
    "limit_products": [],
    "subevent": None,
    "rules": json.dumps({"<": [{"var": "entries_today"}, 1]}),
    "exit_all_at": None,
}
TIMES = {"tz": "Europe/Berlin", "date_from": 1_780_000_000, "date_to": None, "date_admission": None}


@pytest.fixture
def desk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    issuer, revocation = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    for name, key in (("issuer", issuer), ("rev", revocation)):
        (tmp_path / f"{name}.pem").write_bytes(keys.public_pem(key.public_key()))
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", EVENT, "issuer.pem"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "revocation", "rev.pem"]) == 0
    return issuer, revocation


def signed(key, version=1, site="arena", **changes) -> bytes:
    return checkinlist.encode_list(
        key,
        site=site,
        version=version,
        iat=int(time.time()),
        event=EVENT,
        settings={**SETTINGS, **changes},
        times=TIMES,
        gates={},
    )


def verify(capsys, text, *extra):
    code = main(["verify", "--keyring", "ring", "--event", EVENT, "--site", "arena", "--json", *extra, text])
    out = json.loads(capsys.readouterr().out)
    assert code == (0 if out["decision"] == "admit" else 1)
    return out["reason"]


def test_a_desk_answers_as_a_gate_holding_the_list(desk, capsys, tmp_path):
    issuer, revocation = desk
    (tmp_path / "list.cose").write_bytes(signed(revocation))
    secret = encode_secret(Fields(seed="w1", item=1), issuer)
    once_a_day = ["--checkin-list", "list.cose", "--state", "desk.db", "--record"]
    assert verify(capsys, secret, *once_a_day, "--at", "2026-06-06T23:30:00+02:00") == "ok"
    assert verify(capsys, secret, *once_a_day, "--at", "2026-06-06T23:50:00+02:00") == "rules"
    assert verify(capsys, secret, *once_a_day, "--at", "2026-06-07T00:10:00+02:00") == "ok"  # a new day in Berlin
    # without the list: pretix's one entry, no rules
    assert verify(capsys, secret, "--state", "other.db", "--at", "2026-06-07T00:10:00+02:00") == "ok"


def test_a_list_the_desk_cannot_take_is_said_and_not_used(desk, capsys, tmp_path):
    issuer, revocation = desk
    (tmp_path / "forged.cose").write_bytes(signed(issuer))  # an issuer key is no revocation key
    secret = encode_secret(Fields(seed="w2", item=1), issuer)
    code = main(
        ["verify", "--keyring", "ring", "--event", EVENT, "--site", "arena", "--checkin-list", "forged.cose", secret]
    )
    out = capsys.readouterr()
    assert code == 0 and "rejected (unknown_key)" in out.err and "no list held" in out.err


def test_the_store_keeps_the_newest_good_list(desk, tmp_path):
    _, revocation = desk
    ring = keys.load_keyring(tmp_path / "ring")
    with GateStore(tmp_path / "gate.db", site="arena", gate="north") as store:
        assert checkinlists.accept(store, signed(revocation, 2), ring, site="arena").status == "applied"
        for blob, code in (
            (signed(revocation, 2), "replay"),
            (signed(revocation, 1), "replay"),
            (signed(revocation, 3, site="elsewhere"), "wrong_site"),
            (signed(revocation, 4, rules='{"now_is": 1}'), "bad_rules"),
            (b"\x00" * 10, "malformed"),
        ):
            outcome = checkinlists.accept(store, blob, ring, site="arena")
            assert (outcome.status, outcome.code, outcome.version) == ("rejected", code, 2)
        assert checkinlists.held(store, ring).version == 2
        assert checkinlists.accept(store, signed(revocation, 3, name="Sunday"), ring, site="arena").status == "applied"
        assert (checkinlists.held(store, ring).name, checkinlists.held(store, ring).version) == ("Sunday", 3)
    text = health.prometheus_text(
        {"mode": "online", "checkin_list": 'Sun"day', "checkin_list_version": 3}, site="arena", gate="north"
    )
    assert 'gated_checkin_list_version{site="arena",gate="north",list="Sun\\"day"} 3' in text
