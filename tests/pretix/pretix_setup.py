"""Set up a pretix instance for gated's tests: run with pretix's OWN venv python, never gated's.

    PRETIX_CONFIG_FILE=.../pretix.cfg .venv-pretix/bin/python tests/pretix/pretix_setup.py OUT.json

Makes (with pretix's models, after `python -m pretix migrate`) an organizer `gated`, an event
`final-2026` (time zone Europe/Berlin) whose ticket code generator is `pretix_sig1`, six products
(`Adult`, `VIP`, `Kid`, `Day pass` in variations Saturday and Sunday; `Late`, valid only from 2099;
`Early`, valid only until 2000), a quota, a
check-in list, two gates (`north`, `south`), a team API token, an initialized device (security
profile pretixSCAN) for device authentication at gate north and one at gate south, then
writes their ids as JSON. Orders are made later through pretix's REST API, so their secrets come
from pretix's own Sig1TicketSecretGenerator.
"""

import json
import os
import sys
from datetime import datetime, timezone
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pretix.settings")

import django  # noqa: E402

django.setup()

from django.utils.crypto import get_random_string  # noqa: E402
from django.utils.timezone import now  # noqa: E402
from django_scopes import scopes_disabled  # noqa: E402
from pretix.base.models import Device, Event, Gate, Item, Organizer, Team  # noqa: E402


def main(out: str) -> None:
    with scopes_disabled():
        organizer = Organizer.objects.create(name="gated tests", slug="gated")
        event = Event.objects.create(
            organizer=organizer,
            name="Final 2026",
            slug="final-2026",
            live=True,
            currency="EUR",
            date_from=datetime(2026, 6, 1, 18, tzinfo=timezone.utc),
        )
        event.settings.ticket_secret_generator = "pretix_sig1"
        event.settings.payment_term_days = 7
        event.settings.timezone = "Europe/Berlin"
        adult = Item.objects.create(event=event, name="Adult", default_price=Decimal("20.00"), admission=True)
        late = Item.objects.create(
            event=event,
            name="Late",
            default_price=Decimal("10.00"),
            admission=True,
            validity_mode=Item.VALIDITY_MODE_FIXED,
            validity_fixed_from=datetime(2099, 1, 1, tzinfo=timezone.utc),
            validity_fixed_until=datetime(2099, 12, 31, tzinfo=timezone.utc),
        )
        early = Item.objects.create(
            event=event,
            name="Early",
            default_price=Decimal("10.00"),
            admission=True,
            validity_mode=Item.VALIDITY_MODE_FIXED,
            validity_fixed_from=datetime(1999, 1, 1, tzinfo=timezone.utc),
            validity_fixed_until=datetime(2000, 1, 1, tzinfo=timezone.utc),
        )
        vip = Item.objects.create(event=event, name="VIP", default_price=Decimal("50.00"), admission=True)
        kid = Item.objects.create(event=event, name="Kid", default_price=Decimal("5.00"), admission=True)
        day = Item.objects.create(event=event, name="Day pass", default_price=Decimal("15.00"), admission=True)
        saturday, sunday = day.variations.create(value="Saturday"), day.variations.create(value="Sunday")
        quota = event.quotas.create(name="all", size=None)
        quota.items.add(adult, late, early, vip, kid, day)
        quota.variations.add(saturday, sunday)
        north = Gate.objects.create(organizer=organizer, name="North", identifier="north")
        south = Gate.objects.create(organizer=organizer, name="South", identifier="south")
        checkin_list = event.checkin_lists.create(name="Gates", all_products=True)
        team = Team.objects.create(
            organizer=organizer,
            name="gated",
            all_events=True,
            all_event_permissions=True,
            all_organizer_permissions=True,
        )
        token = team.tokens.create(name="gated tests")
        # a scanning device as after pretix's initialization handshake, with pretixSCAN's security profile
        device = Device.objects.create(
            organizer=organizer,
            name="gated central",
            all_events=True,
            security_profile="pretixscan",
            initialized=now(),
            api_token=get_random_string(64),
            hardware_brand="gated",
            hardware_model="central",
            software_brand="gated",
            software_version="0.1",
            gate=north,
        )
        south_device = Device.objects.create(
            organizer=organizer,
            name="gated south",
            all_events=True,
            security_profile="pretixscan",
            initialized=now(),
            api_token=get_random_string(64),
            hardware_brand="gated",
            hardware_model="south",
            software_brand="gated",
            software_version="0.1",
            gate=south,
        )
    with open(out, "w") as fh:
        json.dump(
            {
                "organizer": organizer.slug,
                "event": event.slug,
                "token": token.token,
                "device_token": device.api_token,
                "device_token_south": south_device.api_token,
                "gates": {"north": north.pk, "south": south.pk},
                "items": {
                    "adult": adult.pk,
                    "late": late.pk,
                    "early": early.pk,
                    "vip": vip.pk,
                    "kid": kid.pk,
                    "day": day.pk,
                },
                "variations": {"saturday": saturday.pk, "sunday": sunday.pk},
                "checkin_list": checkin_list.pk,
            },
            fh,
        )


if __name__ == "__main__":
    main(sys.argv[1])
