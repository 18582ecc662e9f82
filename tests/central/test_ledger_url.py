"""A PostgreSQL URL the URL parser cannot read is one line naming it, never its password."""

from __future__ import annotations

import pytest

from gated.cli import main


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://u@[::1/db", "postgresql://u@[::1/db"),
    ],
)
def test_reconcile_with_an_unreadable_postgres_url_says_so(url, shown, capsys):
    """Before: `ValueError: Invalid IPv6 URL` as a traceback from _without_password."""
    assert main(["reconcile", "--db", url]) == 2
    err = capsys.readouterr().err
    assert f"gated reconcile: {shown}: not a database URL (Invalid IPv6 URL)" in err
    assert "secret" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?sslmode=require&password=secret", "postgresql://u@h/db?sslmode=require&password=***"),
        ("postgresql://u@h/db?PASSWORD=secret#x", "postgresql://u@h/db?PASSWORD=***#x"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_a_password_in_a_url_never_reaches_a_message(url, shown):
    """libpq also takes the password as ?password=: masked like user:PASSWORD@."""
    from gated.central.ledgerdb import _without_password

    assert _without_password(url) == shown


def test_a_password_holding_a_slash_is_masked_though_the_url_cannot_be_read():
    from gated.central.ledgerdb import LedgerError, _without_password

    with pytest.raises(LedgerError) as refused:
        _without_password("postgresql://u:pa/secret@host/db")
    assert "secret" not in str(refused.value) and "postgresql://u:***@host/db" in str(refused.value)
