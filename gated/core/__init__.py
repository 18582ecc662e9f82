"""The pure heart of gated: bytes and values in, values out.

    base45, cose   the encodings every signed message uses (RFC 9285, RFC 9052 profile)
    ticket         GT1/GT2 ticket codec: scanned text -> Ticket or Rejection
    reasons        the stable denial reason codes
    decide         decide(ticket, facts, context, now) -> Decision, one table row per reason
    gatestate      the turnstile's state table (modes, lock sources, timers)
    events         scan/passage/alarm/state event records: canonical JSON, hash chain, seal
    signed         the keyring's data types and the one check of a signed message (open_signed)
    revocation     revocation updates: encode, verify, read
    beacon         time beacons: encode, verify, read
    command        remote commands: the vocabulary, encode, verify, read
    announce       a gate's device-key announcement in its status messages
    occupancy      the ledger's signed occupancy counts

Nothing here does I/O or reads a clock: `now` is a parameter, the store's facts come in as values,
and keys come in as objects with the keyring's `find()`. tests/core/test_layers.py keeps it so (no
sqlite3, paho, gpiozero, structlog, cv2, socket, threading, time, and nothing from the gate's
shell or the central side).
"""
