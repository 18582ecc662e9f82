"""What a scanned text is: the one entry point from a QR text to a ticket, whatever its format.

    size (<= 1024 characters) -> `GTn:` prefix: our tickets (gated/core/ticket.py: GT1, GT2; another
    n is `unsupported`) -> the base64 alphabet: a pretix_sig1 secret (gated/core/pretix_secret.py)
    -> anything else is `malformed`.

`read_code()` returns a `Ticket` (or a `PretixTicket`) or a `Rejection`, and never raises for any
input text. It lives apart from the codecs so that each codec imports only what it builds on (the
pretix codec builds on ticket.py's Ticket) and nothing imports in a circle.
"""

from __future__ import annotations

from gated.core import pretix_secret, ticket
from gated.core.reasons import Reason
from gated.core.ticket import MAX_TEXT, Keyring, Rejection, Ticket


def read_code(text: str, keyring: Keyring) -> Ticket | Rejection:
    """Decode and verify one scanned text. Never raises for any input text."""
    if len(text) > MAX_TEXT:
        return Rejection(Reason.MALFORMED, f"text of {len(text)} characters, over {MAX_TEXT}")
    if ticket.has_ticket_prefix(text):
        return ticket.read_ticket(text, keyring)
    if pretix_secret.looks_like(text):
        return pretix_secret.read_secret(text, keyring)
    return Rejection(Reason.MALFORMED, "not a gated ticket (no GT1:/GT2: prefix) nor a pretix_sig1 secret")
