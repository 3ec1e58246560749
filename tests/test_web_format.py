"""web_format: how the status pages write times for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heartwatch.web.format import local_text, zone

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "Asia/Kathmandu",
         "No/Such_Zone"]


@pytest.mark.parametrize("tz", ZONES)
def test_local_text_is_strftime_in_the_checks_zone_across_dst_changes(tz: str) -> None:
    # Every 37 minutes and 13.4 seconds through 2024 (both DST changes of every zone with one), plus epoch 0.
    instants = [datetime(1970, 1, 1, tzinfo=UTC)]
    t = datetime(2024, 1, 1, tzinfo=UTC)
    while t.year == 2024:
        instants.append(t)
        t += timedelta(minutes=37, seconds=13.4)
    for dt in instants:
        local = dt.astimezone(zone(tz))
        assert local_text(dt, tz) == local.strftime("%Y-%m-%d %H:%M:%S %Z")
        assert local_text(dt, tz, seconds=False) == local.strftime("%Y-%m-%d %H:%M %Z")


def test_local_text_examples() -> None:
    dt = datetime(2024, 3, 31, 0, 59, 59, 999999, tzinfo=UTC)
    assert local_text(dt, "Europe/Berlin") == "2024-03-31 01:59:59 CET"
    assert local_text(dt + timedelta(microseconds=1), "Europe/Berlin") == "2024-03-31 03:00:00 CEST"
    assert local_text(dt, "Asia/Kathmandu", seconds=False) == "2024-03-31 06:44 +0545"
    assert local_text(dt, "No/Such_Zone") == "2024-03-31 00:59:59 UTC"
