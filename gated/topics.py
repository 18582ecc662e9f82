"""MQTT topics, PROTOCOL §6-7 (and the health extension in docs/protocol.md), in one place.

gated/v1/<site>/gates/<gate>/events       gate -> central   QoS 1        scan events (§5)
gated/v1/<site>/gates/<gate>/status       gate -> all       QoS 1, retained; last will `offline`
gated/v1/<site>/gates/<gate>/cmd          central -> gate   QoS 1        signed commands
gated/v1/<site>/gates/<gate>/health       gate -> all       retained     (extension)
gated/v1/<site>/gates/<gate>/committed    ledger -> gate    QoS 1, retained  {"seq": n}: events 1..n held (extension)
gated/v1/<site>/revocations/<version>/<part>   central -> gates   QoS 1, retained
gated/v1/<site>/time                      central -> gates  retained     signed time beacons
gated/v1/<site>/occupancy                 ledger -> all     QoS 1, retained   people inside (extension)
gated/v1/<site>/checkinlist               central -> gates  QoS 1, retained   the pretix check-in list (extension)
gated/v1/<site>/admissions/<event>/<part> central -> gates  QoS 1, retained   admissions snapshot (extension)
"""

from __future__ import annotations


def root(site: str) -> str:
    return f"gated/v1/{site}/"


def gate_topic(site: str, gate: str, leaf: str) -> str:
    """`gate` may be the single-level wildcard `+` (a ledger or a peer listening to every gate)."""
    return f"{root(site)}gates/{gate}/{leaf}"


def events_topic(site: str, gate: str) -> str:
    return gate_topic(site, gate, "events")


def status_topic(site: str, gate: str) -> str:
    return gate_topic(site, gate, "status")


def command_topic(site: str, gate: str) -> str:
    return gate_topic(site, gate, "cmd")


def health_topic(site: str, gate: str) -> str:
    return gate_topic(site, gate, "health")


def committed_topic(site: str, gate: str) -> str:
    return gate_topic(site, gate, "committed")


def revocation_topic(site: str, version: int, part: int) -> str:
    return f"{root(site)}revocations/{version}/{part}"


def beacon_topic(site: str) -> str:
    return f"{root(site)}time"


def occupancy_topic(site: str) -> str:
    return f"{root(site)}occupancy"


def checkin_list_topic(site: str) -> str:
    return f"{root(site)}checkinlist"


def admissions_topic(site: str, event: str, part: int | str = "+") -> str:
    """The admissions snapshot of `event` (docs/protocol.md, "Replacing a gate"); part `+`: all."""
    return f"{root(site)}admissions/{event}/{part}"


def events_topic_gate(topic: str, site: str | None = None) -> str | None:
    """The gate an events topic names (`gated/v1/<site>/gates/<gate>/events`; any site when
    `site` is None), or None when `topic` is not one."""
    return _topic_gate(topic, "events", site)


def _topic_gate(topic: str, leaf: str, site: str | None) -> str | None:
    parts = topic.split("/")
    if (
        len(parts) != 6
        or parts[:2] != ["gated", "v1"]
        or parts[3] != "gates"
        or parts[5] != leaf
        or (site is not None and parts[2] != site)
        or not parts[4]
    ):
        return None
    return parts[4]


def status_topic_gate(topic: str, site: str | None = None) -> str | None:
    """The gate a status topic names (`gated/v1/<site>/gates/<gate>/status`), or None."""
    return _topic_gate(topic, "status", site)
