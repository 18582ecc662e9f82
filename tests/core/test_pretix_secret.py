"""pretix_sig1 secrets at the gate: secrets made by pretix's own generator (tests/vectors/pretix_sig1.json,
made by tests/vectors/make_pretix_vectors.py in pretix's venv) trusted with `gated keys trust --event`
and judged by `gated verify`; the strict payload reader against hostile inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gated import keys
from gated.cli import main
from gated.core import pretix_secret
from gated.core.pretix_secret import Fields, PretixTicket
from gated.core.reasons import Reason
from gated.core.scanned import read_code
from gated.core.ticket import Rejection
from gated.keys import Keyring

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "pretix_sig1.json").read_text())
SECRETS = VECTORS["secrets"]
EVENT = "final-2026"
IN_WINDOW = VECTORS["window"]["from"] + 3600


@pytest.fixture
def desk(tmp_path, monkeypatch):
    """A keyring trusting the event key pretix published (valid_keys.pretix_sig1: base64 of a PEM)."""
    monkeypatch.chdir(tmp_path)
    Path("event.pem").write_bytes(base64.b64decode(VECTORS["valid_keys"]["event"]))
    Path("other.pem").write_bytes(base64.b64decode(VECTORS["valid_keys"]["other_event"]))
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", EVENT, "event.pem"]) == 0
    assert main(["keys", "generate", "--out", "k", "--name", "rev"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "revocation", "k/rev.pub"]) == 0
    return tmp_path


def verify(capsys, text, *extra, event=EVENT):
    code = main(["verify", "--keyring", "ring", "--event", event, "--json", *extra, text])
    out = json.loads(capsys.readouterr().out)
    assert code == (0 if out["decision"] == "admit" else 1)
    return out


def test_secrets_issued_by_pretix_are_admitted_with_the_documented_ticket_id(desk, capsys):
    for name in ("plain", "variation", "subevent"):
        out = verify(capsys, SECRETS[name])
        assert (out["decision"], out["reason"], out["event"]) == ("admit", "ok", EVENT), name
        assert out["ticket"] == hashlib.sha256(SECRETS[name].encode()).digest()[:16].hex()
    assert verify(capsys, SECRETS["variation"])["type"] == "item 14 variation 3"


def test_validity_window_from_pretix_gives_not_yet_valid_and_expired(desk, capsys):
    window = VECTORS["window"]
    assert verify(capsys, SECRETS["window"], "--at", "2026-06-01T20:03:00Z")["decision"] == "admit"
    assert verify(capsys, SECRETS["window"], "--at", "2026-06-01T19:58:00+02:00")["reason"] == "not_yet_valid"
    assert verify(capsys, SECRETS["window"], "--now", str(window["from"] - 61))["reason"] == "not_yet_valid"
    assert verify(capsys, SECRETS["window"], "--now", str(window["from"] - 59))["decision"] == "admit"  # skew 60 s
    assert verify(capsys, SECRETS["window"], "--at", "2026-06-02T00:00:00+01:00")["decision"] == "admit"
    assert verify(capsys, SECRETS["window"], "--at", "2026-06-02")["reason"] == "expired"


def test_tampered_untrusted_and_foreign_secrets_get_their_reasons(desk, capsys):
    text = SECRETS["plain"]
    raw = bytearray(base64.b64decode(text[::-1]))
    raw[8] ^= 0x01  # inside the payload: still well-formed, the signature no longer matches
    tampered = base64.b64encode(bytes(raw)).decode()[::-1]
    assert verify(capsys, tampered)["reason"] == "bad_signature"
    assert verify(capsys, SECRETS["other_event"])["reason"] == "bad_signature"  # its key is not trusted
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "other", "other.pem"]) == 0
    capsys.readouterr()
    assert verify(capsys, SECRETS["other_event"])["reason"] == "wrong_event"
    assert verify(capsys, SECRETS["other_event"], event="other")["decision"] == "admit"
    assert verify(capsys, "m5bo19xmfwajld4ndyual9isjhti0e9q")["reason"] == "malformed"  # pretix's random secret
    assert verify(capsys, text[:-4])["reason"] == "malformed"


def test_a_gate_limited_to_products_admits_only_those(desk, capsys):
    assert verify(capsys, SECRETS["plain"], "--product", "12")["decision"] == "admit"
    assert verify(capsys, SECRETS["variation"], "--product", "12")["reason"] == "wrong_zone"
    assert verify(capsys, SECRETS["variation"], "--product", "14/3")["decision"] == "admit"
    assert verify(capsys, SECRETS["variation"], "--product", "14")["decision"] == "admit"  # every variation of 14
    assert verify(capsys, SECRETS["variation"], "--product", "14/4", "--product", "12")["reason"] == "wrong_zone"


def test_a_pretix_key_must_name_exactly_one_event(tmp_path, capsys):
    ring = tmp_path / "ring"
    (tmp_path / "event.pem").write_bytes(base64.b64decode(VECTORS["valid_keys"]["event"]))
    keys.trust_key_file(ring, tmp_path / "event.pem", "issuer")  # no --event
    code = read_code(SECRETS["plain"], keys.load_keyring(ring))
    assert isinstance(code, Rejection) and code.reason is Reason.UNKNOWN_KEY


def test_revoke_code_and_one_entry(desk, capsys):
    text = SECRETS["plain"]
    assert verify(capsys, text, "--state", "gate.db", "--record")["decision"] == "admit"
    assert verify(capsys, text, "--state", "gate.db")["reason"] == "already_used"
    assert (
        main(
            [
                "revoke",
                "--signing-key",
                "k/rev.key",
                "--site",
                "local",
                "--version",
                "1",
                "--out",
                "rev.cose",
                "--code",
                text,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert verify(capsys, text, "--revocations", "rev.cose")["reason"] == "revoked"
    assert verify(capsys, SECRETS["subevent"], "--revocations", "rev.cose")["decision"] == "admit"


def test_revoke_code_reads_gt_codes_and_refuses_other_text(desk, capsys):
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    capsys.readouterr()
    assert main(["issue", "--signing-key", "k/box.key", "--event", "FINAL"]) == 0
    gt1 = capsys.readouterr().out.strip()
    assert (
        main(
            ["revoke", "--signing-key", "k/rev.key", "--site", "s", "--version", "1", "--out", "r.cose", "--code", gt1]
        )
        == 0
    )
    assert (
        main(
            [
                "revoke",
                "--signing-key",
                "k/rev.key",
                "--site",
                "s",
                "--version",
                "1",
                "--out",
                "r.cose",
                "--code",
                "hello world",
            ]
        )
        == 2
    )


def test_verify_at_judges_a_gt1_ticket_at_that_time(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["keys", "generate", "--out", "k", "--name", "box"])
    main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "F", "k/box.pub"])
    capsys.readouterr()
    main(
        [
            "issue",
            "--signing-key",
            "k/box.key",
            "--event",
            "F",
            "--valid-from",
            "2026-06-01T18:00:00Z",
            "--valid-until",
            "2026-06-01T23:00:00Z",
        ]
    )
    text = capsys.readouterr().out.strip()
    assert verify(capsys, text, "--at", "2026-06-01T20:03:00Z", event="F")["decision"] == "admit"
    assert verify(capsys, text, "--at", "2026-06-01T17:00:00Z", event="F")["reason"] == "not_yet_valid"
    assert main(["verify", "--keyring", "ring", "--event", "F", "--at", "yesterday", text]) == 2


# --- the payload reader --------------------------------------------------------------------

KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))


def signed(payload: bytes, *, sig_len=None, extra=b"") -> str:
    signature = KEY.sign(payload)
    raw = b"\x01" + struct.pack(">HH", len(payload), sig_len or len(signature)) + payload + signature + extra
    return base64.b64encode(raw).decode()[::-1]


@pytest.fixture
def ring(tmp_path):
    (tmp_path / "k.pem").write_bytes(keys.public_pem(KEY.public_key()))
    keys.trust_key_file(tmp_path / "ring", tmp_path / "k.pem", "issuer", events=["E"])
    return keys.load_keyring(tmp_path / "ring")


def reason(text, ring) -> Reason:
    code = read_code(text, ring)
    return Reason.OK if isinstance(code, PretixTicket) else code.reason


def test_our_encoder_matches_pretix_field_for_field(ring):
    fields = Fields(seed="abcdefghi", item=12, variation=3, subevent=7, valid_from=1780336800, valid_until=1780354800)
    payload = pretix_secret.encode_payload(fields)
    assert pretix_secret.parse_payload(payload) == fields
    ticket = read_code(pretix_secret.encode_secret(fields, KEY), ring)
    assert isinstance(ticket, PretixTicket) and (ticket.item, ticket.variation, ticket.subevent) == (12, 3, 7)
    assert (ticket.claims.nbf, ticket.claims.exp, ticket.claims.aud) == (1780336800, 1780354800, "E")
    no_bounds = read_code(pretix_secret.encode_secret(Fields(seed="x", item=1), KEY), ring)
    assert no_bounds.claims.nbf == 0 and no_bounds.claims.exp == 2**63 - 1


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"\x10" + b"\xff" * 9 + b"\x01", Reason.MALFORMED),  # item = -1 (int64 as a 10-byte varint)
        (b"\x10" + b"\x80" * 9 + b"\x01", Reason.MALFORMED),  # item = -2^63
        (b"\x10" + b"\xff" * 8 + b"\x7f", Reason.OK),  # item = 2^63-1: the largest allowed
        (b"\x10" + b"\xff" * 9 + b"\x7f", Reason.MALFORMED),  # above 64 bits
        (b"\x10" + b"\x80" * 11, Reason.MALFORMED),  # varint longer than 10 bytes
        (b"\x10\x80", Reason.MALFORMED),  # truncated varint
        (b"\x10\x01\x10\x02", Reason.MALFORMED),  # item twice
        (b"\x12\x01x", Reason.MALFORMED),  # item with the wrong wire type
        (b"\x0a\x05abc", Reason.MALFORMED),  # seed runs past the payload
        (b"\x0a\xff\xff\xff\xff\x0f", Reason.MALFORMED),  # huge length
        (b"\x0a\x02\xff\xfe", Reason.MALFORMED),  # seed not UTF-8
        (b"\x38\x01", Reason.UNSUPPORTED),  # field 7: unknown to this gate
        (b"\x00", Reason.UNSUPPORTED),  # field 0
        (b"", Reason.OK),  # the empty message: item 0, no bounds
    ],
)
def test_hostile_payloads_are_refused_with_a_reason(ring, payload, expected):
    assert reason(signed(payload), ring) is expected


def test_envelope_rules(ring):
    good = signed(b"\x10\x01")
    assert reason(good, ring) is Reason.OK
    assert reason(signed(b"\x10\x01", extra=b"\x00"), ring) is Reason.MALFORMED  # trailing byte
    assert reason(signed(b"\x10\x01", sig_len=63), ring) is Reason.MALFORMED
    raw = base64.b64decode(good[::-1])
    assert reason(base64.b64encode(b"\x02" + raw[1:]).decode()[::-1], ring) is Reason.MALFORMED  # version 2
    assert reason(good[::-1], ring) is Reason.MALFORMED  # not reversed


def test_non_canonical_base64_is_malformed(ring):
    payload = b"\x10\x01"
    for pad in range(3):  # find a signed secret whose base64 ends in one '=' (two unused bits)
        text = signed(payload + b"\x18\x01" * pad)
        if text.startswith("=") and not text.startswith("=="):
            encoded = text[::-1]
            last = encoded[-2]
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            twin = encoded[:-2] + alphabet[alphabet.index(last) + 1] + "="
            assert base64.b64decode(twin) == base64.b64decode(encoded)
            assert reason(twin[::-1], ring) is Reason.MALFORMED
            return
    pytest.fail("no secret with one padding character made")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_in_a_signed_envelope_never_raise(payload):
    ring = Keyring((keys.trusted("k", KEY.public_key(), ["issuer"], ["E"]),))
    assert isinstance(read_code(signed(payload), ring), (PretixTicket, Rejection))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=300))
def test_any_base64_text_never_raises(text):
    assert isinstance(read_code(text, Keyring()), Rejection)


def test_pretix_entries_are_one_unless_the_gate_says_otherwise(desk, capsys):
    text = SECRETS["plain"]
    for _ in range(2):
        assert verify(capsys, text, "--state", "two.db", "--record", "--pretix-entries", "2")["decision"] == "admit"
    assert verify(capsys, text, "--state", "two.db", "--pretix-entries", "2")["reason"] == "already_used"
    assert verify(capsys, text, "--state", "two.db", "--pretix-entries", "0")["decision"] == "admit"  # unlimited


def test_gate_config_takes_products_and_pretix_entries(tmp_path):
    from gated.gate import config

    path = tmp_path / "gated.toml"
    path.write_text(
        '[gate]\nsite = "arena"\nid = "g1"\nevents = ["final-2026"]\nkeyring = "keyring"\n'
        'products = ["12", "14/3"]\npretix_entries = 2\npretix_subevents = [7]\n'
        '[turnstile]\nboard = "generic-relay"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'
    )
    cfg = config.load(path)
    assert cfg.gate.products == ("12", "14/3") and cfg.gate.pretix_entries == 2 and cfg.gate.pretix_subevents == (7,)
    path.write_text(path.read_text().replace("pretix_entries = 2", "pretix_entries = -1"))
    with pytest.raises(config.ConfigError, match="gate.pretix_entries"):
        config.load(path)


def test_gated_scan_reads_a_pretix_code_from_a_camera_frame_at_a_given_time(desk, capsys):
    import cv2

    from tests.support.frames import ticket_frames

    cv2.imwrite(
        "frame.png",
        ticket_frames(
            [SECRETS["window"]],
            blur=0,
            motion=0,
            noise=0,
            glare=0,
            tilt=0,
            rotation=0,
            gradient=0,
            contrast=1,
            inverted=False,
        )[0],
    )
    argv = ["scan", "--json", "frame.png", "--keyring", "ring", "--event", EVENT]
    assert main([*argv, "--at", "2026-06-01T20:03:00Z"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["codes"] == [SECRETS["window"]] and line["decisions"][0]["decision"] == "admit"
    assert main([*argv, "--at", "2026-06-02T08:00:00Z"]) == 1
    assert json.loads(capsys.readouterr().out)["decisions"][0]["reason"] == "expired"


def test_sync_cursor_overlaps_and_never_goes_back():
    from datetime import datetime, timezone

    from gated.central.pretix import _cursor

    newest = datetime(2026, 6, 1, 20, 0, 0, 123456, tzinfo=timezone.utc)
    now = datetime(2026, 6, 1, 21, 0, tzinfo=timezone.utc)
    assert _cursor(newest, None, now) == "2026-06-01T19:55:00.123456Z"
    assert _cursor(newest, "2026-06-01T19:58:00.000000Z", now) == "2026-06-01T19:58:00.000000Z"


def test_sync_cursor_never_passes_the_local_time_less_the_overlap():
    """A time from the future (or a state file a bad answer once moved there) stops at now - 5 min;
    the calendar's first and last moments are used, not an OverflowError."""
    from datetime import datetime, timezone

    from gated.central.pretix import _cursor

    now = datetime(2026, 6, 1, 21, 0, tzinfo=timezone.utc)
    far = datetime.max.replace(tzinfo=timezone.utc)
    assert _cursor(far, None, now) == "2026-06-01T20:55:00.000000Z"
    assert _cursor(now, "9999-12-30T23:54:59.999999Z", now) == "2026-06-01T20:55:00.000000Z"
    assert _cursor(datetime.min.replace(tzinfo=timezone.utc), None, now) == "2000-01-01T00:00:00.000000Z"


def test_a_gate_for_some_dates_of_a_pretix_series_denies_the_others(desk, capsys):
    assert verify(capsys, SECRETS["subevent"], "--pretix-subevent", "7")["decision"] == "admit"
    assert verify(capsys, SECRETS["subevent"], "--pretix-subevent", "8")["reason"] == "wrong_event"
    assert (
        verify(capsys, SECRETS["subevent"], "--pretix-subevent", "8", "--pretix-subevent", "7")["decision"] == "admit"
    )
    assert verify(capsys, SECRETS["plain"], "--pretix-subevent", "7")["reason"] == "wrong_event"  # no date at all
    assert verify(capsys, SECRETS["plain"])["decision"] == "admit"  # no limit: every date


def test_gate_config_refuses_subevents_that_are_not_ids(tmp_path):
    from gated.gate import config

    path = tmp_path / "gated.toml"
    path.write_text(
        '[gate]\nsite = "arena"\nid = "g1"\nevents = ["final-2026"]\nkeyring = "keyring"\n'
        'pretix_subevents = ["7", true]\n'
        '[turnstile]\nboard = "generic-relay"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n'
    )
    with pytest.raises(config.ConfigError, match="gate.pretix_subevents: expected a list of integers"):
        config.load(path)
