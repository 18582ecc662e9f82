#!/usr/bin/env python3
"""Write the site broker's access rules (Mosquitto's dynamic-security plugin file) for a list of gates.

    systemd/mosquitto/make-dynsec.py OUTFILE [--site SITE] [--ledger NAME]... GATE...            (a site broker)
    systemd/mosquitto/make-dynsec.py OUTFILE --ledger NAME=SITE... --bridge CN=SITE...           (a central broker)

User names are client-certificate CNs (gated-site.conf: use_identity_as_username), and client ids
too (use_username_as_clientid). Identities:

  GATE     each gate (CN = gate id): writes only gates/<itself>/events|status|health|doctor, reads its
           own cmd, doctor (`gated doctor`'s test message) and committed (the ledger's progress), every gate's events and status (cross-gate
           anti-passback), revocations, admissions snapshots (a replaced gate's recovery), time and
           occupancy (the ledger's people-inside figures, for
           a zone's capacity).
           It cannot subscribe to anything else, in particular not to a shared subscription
           ($share/...), so it cannot take events away from the ledgers.
  central  writes revocations, admissions snapshots, commands and time beacons; reads everything (short tools:
           publish-revocations, commands; one at a time, they share the certificate).
  beacon   writes time beacons (the long-running `gated beacon`).
  operator the operator's tools while the site runs (`gated status`, `gated command`, `gated keys
           enrol`): reads every gate's status and health and the occupancy, writes commands (which
           gates act on only when signed by a command key). Its own certificate, so no tool takes
           over a running gate's or ledger's session (the CN is the client id): --operator NAME for
           each (CN `operator` or `operator-<name>`), default one `operator`.
  ledger   reads events, status and health, plainly or through `$share/<group>/...`, and writes
           each gate's `committed` (docs/protocol.md, "Committed events") and the site's occupancy
           (retained: people inside per zone), which it (and `gated status` run as a ledger) also
           reads (each ledger process needs its own certificate:
           --ledger NAME for each, default one `ledger`).

  --site SITE  (site broker) every rule names that site instead of any (`+`): a gate, or a ledger,
           may then write only its own site's topics.
  NAME=SITE  (--ledger, at a central broker serving several sites) that ledger identity reads and
           writes only SITE's topics: one site's ledger certificate cannot confirm another site's
           events or publish its occupancy (docs/protocol.md, "Signed ledger messages").

  CN=SITE  (central broker, --bridge) a site broker's bridge (gated-bridge.conf, certificate CN):
           writes only gated/v1/SITE/gates/+/events|status|health, reads that site's cmd,
           committed, revocations, time and occupancy; nothing of another site.

Why a plugin and not an acl_file: Mosquitto 2.0.11's acl_file does not check SUBSCRIBE at all
(only each delivered message, by its topic), so a gate, which may read every gate's events, could
join the ledgers' shared subscription. The dynamic-security plugin (shipped in the mosquitto
package) checks the subscription filter itself, `$share/` prefix included. It has no %u
substitution, so every gate gets a role of its own: adding a gate means running this again with
the new list and restarting Mosquitto (sessions and queues survive: persistence). The site level
of every topic is `+` (one broker per site). No client here may administer the plugin over MQTT.
Standard library only, so it runs on the broker host without gated installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # gated's gate-id rule (gated/gate/config.py)
CENTRAL = ("central", "beacon")


def acl(kind: str, topic: str) -> dict:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def reads(*topics: str, shared: bool = False) -> list[dict]:
    """Subscribe to and receive `topics` (and, with shared, through any $share group)."""
    out = []
    for topic in topics:
        out += [acl("subscribePattern", topic), acl("publishClientReceive", topic)]
        if shared:
            out.append(acl("subscribePattern", f"$share/+/{topic}"))
    return out


def writes(*topics: str) -> list[dict]:
    return [acl("publishClientSend", topic) for topic in topics]


def ledger_acls(root: str) -> list[dict]:
    return (
        reads(f"{root}/gates/+/events", f"{root}/gates/+/status", f"{root}/gates/+/health", shared=True)
        + writes(f"{root}/gates/+/committed", f"{root}/occupancy", f"{root}/admissions/#")
        + reads(f"{root}/occupancy")
    )


def site_rules(
    gates: list[str],
    ledgers: list[str],
    bridges: dict[str, str] | None = None,
    site: str | None = None,
    operators: list[str] = ("operator",),
) -> dict:
    """`ledgers`: names, or NAME=SITE for a ledger bound to one site; `site`: the one site of a site broker."""
    root = f"gated/v1/{site or '+'}"
    roles = [
        {
            "rolename": "gate",
            "acls": reads(
                f"{root}/gates/+/events",
                f"{root}/gates/+/status",
                f"{root}/revocations/#",
                f"{root}/time",
                f"{root}/occupancy",
                f"{root}/admissions/#",
            ),
        },
        {
            "rolename": "central",
            "acls": writes(f"{root}/revocations/#", f"{root}/gates/+/cmd", f"{root}/time", f"{root}/admissions/#")
            + reads("gated/v1/#"),
        },
        {"rolename": "beacon", "acls": writes(f"{root}/time")},
        {
            "rolename": "operator",
            "acls": reads(f"{root}/gates/+/status", f"{root}/gates/+/health", f"{root}/occupancy")
            + writes(f"{root}/gates/+/cmd"),
        },
        {"rolename": "ledger", "acls": ledger_acls(root)},
    ]
    clients = [{"username": name, "roles": [{"rolename": name}]} for name in CENTRAL]
    clients += [{"username": name, "roles": [{"rolename": "operator"}]} for name in operators]
    for entry in ledgers:
        name, _, own = entry.partition("=")
        if own:
            if not any(r["rolename"] == f"ledger-{own}" for r in roles):
                roles.append({"rolename": f"ledger-{own}", "acls": ledger_acls(f"gated/v1/{own}")})
            clients.append({"username": name, "roles": [{"rolename": f"ledger-{own}"}]})
        else:
            clients.append({"username": name, "roles": [{"rolename": "ledger"}]})
    for gate in gates:
        roles.append(
            {
                "rolename": f"gate-{gate}",
                "acls": writes(*(f"{root}/gates/{gate}/{leaf}" for leaf in ("events", "status", "health", "doctor")))
                + reads(f"{root}/gates/{gate}/cmd", f"{root}/gates/{gate}/committed", f"{root}/gates/{gate}/doctor"),
            }
        )
        clients.append({"username": gate, "roles": [{"rolename": "gate"}, {"rolename": f"gate-{gate}"}]})
    for name, site in (bridges or {}).items():
        base = f"gated/v1/{site}"
        roles.append(
            {
                "rolename": f"bridge-{site}",
                "acls": writes(*(f"{base}/gates/+/{leaf}" for leaf in ("events", "status", "health")))
                + reads(
                    f"{base}/gates/+/cmd",
                    f"{base}/gates/+/committed",
                    f"{base}/revocations/#",
                    f"{base}/time",
                    f"{base}/occupancy",
                    f"{base}/admissions/#",
                ),
            }
        )
        clients.append({"username": name, "roles": [{"rolename": f"bridge-{site}"}]})
    return {
        # anything not granted below is refused (unsubscribing is always allowed)
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outfile")
    parser.add_argument(
        "--ledger",
        action="append",
        metavar="NAME[=SITE]",
        help="a ledger's certificate CN, with =SITE bound to that site's topics (repeat; default: ledger)",
    )
    parser.add_argument(
        "--operator",
        action="append",
        metavar="NAME",
        help="an operator certificate's CN, `operator` or `operator-<name>` (repeat; default: operator)",
    )
    parser.add_argument("--site", help="(site broker) the site: rules name it instead of any site")
    parser.add_argument(
        "--bridge",
        action="append",
        default=[],
        metavar="CN=SITE",
        help="(central broker) a site's bridge certificate CN and its site id (repeat)",
    )
    parser.add_argument("gates", nargs="*", metavar="GATE")
    args = parser.parse_intermixed_args(argv)
    ledger_entries = args.ledger or ["ledger"]
    ledgers = [e.partition("=")[0] for e in ledger_entries]
    bridges = dict(b.split("=", 1) for b in args.bridge if "=" in b)
    if len(bridges) != len(args.bridge) or not (args.gates or bridges):
        parser.error("give GATE... (a site broker) or --bridge CN=SITE... (a central broker)")
    operators = args.operator or ["operator"]
    names = (
        args.gates
        + ledgers
        + operators
        + list(bridges)
        + list(bridges.values())
        + [e.partition("=")[2] for e in ledger_entries if "=" in e]
        + ([args.site] if args.site else [])
    )
    bad = [n for n in names if not NAME.match(n)]
    reserved = [
        n
        for n in args.gates + list(bridges)
        if n in CENTRAL or n in ledgers or n in operators or n == "operator" or n.startswith("operator-")
    ]
    reserved += [n for n in operators if n != "operator" and not n.startswith("operator-")]
    duplicate = sorted(
        {n for n in args.gates + ledgers + list(bridges) if (args.gates + ledgers + list(bridges)).count(n) > 1}
    )
    if bad or reserved or duplicate:
        for n in bad:
            print(f"{n!r}: not a gate id (letters, digits, '.', '_', '-'; at most 64)", file=sys.stderr)
        for n in reserved:
            print(
                f"{n!r}: reserved for a central identity, not usable as a gate id (an operator's CN is `operator` "
                "or `operator-<name>`)",
                file=sys.stderr,
            )
        for n in duplicate:
            print(f"{n!r}: given twice", file=sys.stderr)
        return 2
    text = json.dumps(site_rules(args.gates, ledger_entries, bridges, args.site, operators), indent=2) + "\n"
    fd = os.open(args.outfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # no secrets in it; mosquitto must read it
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    print(
        f"{args.outfile}: {len(args.gates)} gates, {len(bridges)} bridges, ledgers {', '.join(ledgers)}, "
        f"operators {', '.join(operators)}, central, beacon"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
