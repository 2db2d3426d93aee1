"""Times in status: what the operator writes, it reads back and writes again unchanged."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.domain.clock import UTC, format_time, parse_time

_moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(_moments)
def test_a_written_time_reads_back_to_the_same_text(moment: dt.datetime) -> None:
    written = format_time(moment)
    parsed = parse_time(written)
    assert parsed is not None
    assert format_time(parsed) == written


def test_under_a_millisecond_past_the_second_is_written_as_the_whole_second() -> None:
    # Found by the benchmark's restart phase: such a time was written "...00.000Z", read back as
    # a whole second and rendered "...00Z", and a restarted operator rewrote the finished event.
    assert format_time(dt.datetime(2026, 12, 4, 18, 19, 29, 400, tzinfo=UTC)) == "2026-12-04T18:19:29Z"
    assert format_time(dt.datetime(2026, 12, 4, 18, 19, 29, 1_400, tzinfo=UTC)) == "2026-12-04T18:19:29.001Z"
