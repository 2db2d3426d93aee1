"""metav1.Condition bookkeeping: lastTransitionTime moves only when the status does."""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.conditions import Condition, find_condition, upsert_condition

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)
READY = Condition("Ready", "True", "Active", "delivering to https://example.com")


def test_a_new_condition_is_appended_with_now_as_its_transition_time() -> None:
    [ready] = upsert_condition([], READY, now=T0, generation=2)
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Active",
        "message": "delivering to https://example.com",
        "lastTransitionTime": "2025-03-01T12:00:00Z",
        "observedGeneration": 2,
    }


def test_the_transition_time_is_kept_when_the_status_does_not_change() -> None:
    existing = upsert_condition([], READY, now=T0, generation=1)
    moved = Condition("Ready", "True", "Active", "delivering to https://other.example.com")
    [ready] = upsert_condition(existing, moved, now=T1, generation=2)
    assert ready["lastTransitionTime"] == "2025-03-01T12:00:00Z"
    assert (ready["message"], ready["observedGeneration"]) == (moved.message, 2)


def test_a_new_reason_with_the_same_status_keeps_the_transition_time() -> None:
    existing = upsert_condition([], Condition("Ready", "False", "Paused", "paused"), now=T0, generation=1)
    [ready] = upsert_condition(
        existing, Condition("Ready", "False", "SecretNotFound", "no"), now=T1, generation=1
    )
    assert (ready["reason"], ready["lastTransitionTime"]) == ("SecretNotFound", "2025-03-01T12:00:00Z")


def test_the_transition_time_moves_when_the_status_changes() -> None:
    existing = upsert_condition([], READY, now=T0, generation=1)
    [ready] = upsert_condition(
        existing, Condition("Ready", "False", "Paused", "paused"), now=T1, generation=1
    )
    assert ready["lastTransitionTime"] == "2025-03-01T12:05:00Z"


def test_a_condition_without_a_transition_time_gets_one() -> None:
    existing = [{"type": "Ready", "status": "True", "reason": "Active", "message": ""}]
    [ready] = upsert_condition(existing, READY, now=T1, generation=1)
    assert ready["lastTransitionTime"] == "2025-03-01T12:05:00Z"


def test_other_conditions_are_left_as_they_are_and_in_order() -> None:
    other = {
        "type": "Reconciling",
        "status": "False",
        "reason": "Done",
        "message": "",
        "lastTransitionTime": "x",
    }
    updated = upsert_condition([other], READY, now=T0, generation=1)
    assert updated[0] == other and updated[0] is not other  # a copy, the input is not mutated
    assert [c["type"] for c in updated] == ["Reconciling", "Ready"]


def test_upsert_does_not_mutate_its_input() -> None:
    existing = upsert_condition([], READY, now=T0, generation=1)
    snapshot = [dict(c) for c in existing]
    upsert_condition(existing, Condition("Ready", "False", "Paused", "p"), now=T1, generation=2)
    assert existing == snapshot


def test_find_condition_tolerates_garbage() -> None:
    ready = {"type": "Ready", "status": "True"}
    assert find_condition([None, "x", ready], "Ready") == ready
    assert find_condition(None, "Ready") is None
    assert find_condition({"type": "Ready"}, "Ready") is None
    assert find_condition([ready], "Delivered") is None
