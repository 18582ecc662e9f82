"""Property tests: no text crashes the gate; no byte string corrupts the revocation list."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gated.core import base45, cose
from gated.core.decide import GateContext
from gated.core.reasons import Reason
from gated.gate.revocations import apply_update
from gated.gate.validate import validate

CTX = GateContext(site="arena", events=frozenset({"FINAL-2026"}), zone="north")
FIXTURES_OK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FIXTURES_OK
@given(
    text=st.one_of(
        st.text(max_size=1200),
        st.text(alphabet=base45.ALPHABET, max_size=600).map(lambda s: "GT1:" + s),
        st.text(alphabet=base45.ALPHABET, max_size=600).map(lambda s: "GT2:" + s),
        st.binary(max_size=700).map(lambda b: "GT1:" + base45.encode(b)),
        st.binary(max_size=700).map(lambda b: "GT2:" + base45.encode(b)),
    )
)
def test_any_text_gives_a_decision_with_a_reason(authority, text):
    decision = validate(text, authority.keyring, CTX, None, time.time())
    assert isinstance(decision.reason, Reason)
    assert not decision.admit


cbor_leaf = st.one_of(
    st.integers(-(2**70), 2**70),
    st.binary(max_size=20),
    st.text(max_size=10),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
)
cbor_value = st.recursive(
    cbor_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.integers(-8, 8), inner, max_size=5)),
    max_leaves=12,
)


@FIXTURES_OK
@given(claims=st.dictionaries(st.integers(-6, 8), cbor_value, max_size=8))
def test_any_signed_claims_map_is_decided_without_exceptions(authority, claims):
    """A genuine signature over garbage claims: still a reason, never an exception."""
    import cbor2

    text = "GT1:" + base45.encode(cose.sign(cbor2.dumps(claims), authority.issuer))
    assert isinstance(validate(text, authority.keyring, CTX, None, time.time()).reason, Reason)


@FIXTURES_OK
@given(blob=st.one_of(st.binary(max_size=300), cbor_value.map(lambda v: __import__("cbor2").dumps(v))))
def test_any_bytes_as_revocation_update_leave_the_store_consistent(authority, store, blob):
    before = (store.revocation_state(), store.revoked_count())
    outcome = apply_update(store, blob, authority.keyring, site="arena", now_ms=0)
    assert outcome.status == "rejected"
    assert (store.revocation_state(), store.revoked_count()) == before


@FIXTURES_OK
@given(payload=st.dictionaries(st.integers(0, 9), cbor_value, max_size=9))
def test_signed_garbage_updates_are_rejected_or_applied_whole(authority, store, payload):
    import cbor2

    blob = cose.sign(cbor2.dumps(payload), authority.revocation)
    version_before = store.revocation_state().version
    outcome = apply_update(store, blob, authority.keyring, site="arena", now_ms=0)
    assert outcome.status in ("rejected", "applied", "stored")
    state = store.revocation_state()
    if outcome.status == "rejected":
        assert state.version == version_before
    if outcome.status == "applied":
        assert state.version == payload[2]
