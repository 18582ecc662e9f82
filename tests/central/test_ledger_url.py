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
