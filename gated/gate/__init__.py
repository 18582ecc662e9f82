"""What runs only on a gate: the daemon and the parts it builds (scan loop, camera and frames,
scanner, turnstile and boards, clock trust, uplink, revocation and state stores, health and
metrics, sd_notify, the gate's config) and the rehearsal hooks in `rehearsal/`.

The central side never imports this package (tests/core/test_layers.py keeps it so).
"""
