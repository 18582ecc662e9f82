"""The one Ed25519 verifier: tickets, holder-device signatures, revocation updates, commands, beacons
and events (at the gates and at the ledger) are all judged by `verifies()`.

One library, so that a gate and the ledger can never judge the same bytes differently. It is
libsodium (PyNaCl) rather than OpenSSL (cryptography), measured here: about 43 us a check against
71 us, which matters on a Pi's scan path (a GT2 code costs two checks) and at the ledger, which
is mostly signature checks; libsodium also releases the GIL, so the ledger's verify threads run in
parallel; and it is the stricter verifier (it refuses small-order keys and non-canonical
encodings), which costs an honest signer nothing. cryptography stays for what is not
verification: making keys, signing, PEM and X.509.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

SIGNATURE_LEN = 64
PUBLIC_KEY_LEN = 32


def verifies(public_key: bytes | Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key` (raw 32 bytes
    or a cryptography key object). Never raises for hostile input."""
    if isinstance(public_key, Ed25519PublicKey):
        public_key = public_key.public_bytes_raw()
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_LEN:
        return False
    if type(signature) is not bytes or len(signature) != SIGNATURE_LEN or type(message) is not bytes:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
