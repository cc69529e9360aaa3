import math

import pytest

from ranking_gateway.personalization.events import DEFAULT_EVENT_WEIGHTS, Event
from ranking_gateway.serving.schemas import RequestError, parse_event, parse_user_id

DOCS = {"d1", "d2"}.__contains__


def test_valid_event_defaults_ts_to_now_and_carries_the_type_weight():
    event = parse_event({"user_id": "u", "doc_id": "d1", "type": "purchase"}, doc_exists=DOCS, now=1000.0)
    assert event == Event(user_id="u", doc_id="d1", type="purchase", ts=1000.0)
    assert event.weight == 3.0
    assert DEFAULT_EVENT_WEIGHTS["skip"] < 0 < DEFAULT_EVENT_WEIGHTS["click"] < DEFAULT_EVENT_WEIGHTS["dwell"]


def test_all_optional_fields_round_trip_through_the_log_record():
    body = {"user_id": "u", "doc_id": "d2", "type": "skip", "request_id": "r1", "position": 3, "ts": 999}
    event = parse_event(body, doc_exists=DOCS, now=1000.0)
    assert (event.request_id, event.position, event.ts) == ("r1", 3, 999.0)
    record = event.to_record()
    assert record["kind"] == "event"
    assert Event.from_record(record) == event


@pytest.mark.parametrize(
    "body, fragment",
    [
        ([], "JSON object"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "extra": 1}, "unknown field"),
        ({"doc_id": "d1", "type": "click"}, "'user_id' is required"),
        ({"user_id": "  ", "doc_id": "d1", "type": "click"}, "'user_id' must be"),
        ({"user_id": 5, "doc_id": "d1", "type": "click"}, "'user_id' must be"),
        ({"user_id": "u" * 257, "doc_id": "d1", "type": "click"}, "longer than"),
        ({"user_id": "u", "doc_id": "d1", "type": "like"}, "'type' must be one of"),
        ({"user_id": "u", "doc_id": "d1"}, "'type' must be one of"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "position": -1}, "'position'"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "position": True}, "'position'"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "position": 1.5}, "'position'"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "ts": "now"}, "'ts'"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "ts": math.nan}, "'ts'"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "ts": 1000.0 + 3600}, "in the future"),
        ({"user_id": "u", "doc_id": "d1", "type": "click", "request_id": 7}, "'request_id'"),
    ],
)
def test_malformed_bodies_are_422_with_a_code_and_message(body, fragment):
    with pytest.raises(RequestError) as info:
        parse_event(body, doc_exists=DOCS, now=1000.0)
    assert info.value.status == 422
    assert fragment in info.value.message
    code = "unknown_field" if "unknown field" in fragment else "invalid_request"
    assert info.value.code == code


def test_unknown_document_is_404_but_only_after_the_shape_is_valid():
    with pytest.raises(RequestError) as info:
        parse_event({"user_id": "u", "doc_id": "nope", "type": "click"}, doc_exists=DOCS)
    assert (info.value.status, info.value.code) == (404, "unknown_document")
    with pytest.raises(RequestError) as info:
        parse_event({"user_id": "u", "doc_id": "nope", "type": "bad"}, doc_exists=DOCS)
    assert info.value.status == 422


def test_parse_user_id():
    assert parse_user_id("alice") == "alice"
    with pytest.raises(RequestError):
        parse_user_id("")
