import json

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranking_gateway.core.config import SearchLimits
from ranking_gateway.serving.schemas import (
    EVENT_BODY,
    RequestError,
    RerankRequest,
    SearchRequest,
    parse_event,
    parse_user_id,
    rerank_body,
    search_body,
)

LIMITS = SearchLimits(max_query_chars=50, max_k=20, max_candidates=200)


def test_defaults() -> None:
    req = SearchRequest.parse({"query": "volcano"}, LIMITS)
    assert (req.query, req.k, req.candidates, req.rerank, req.user_id) == ("volcano", 10, 100, True, None)
    assert req.retrieval is None  # the gateway's --retrieval


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_retrieval_per_request(mode: str) -> None:
    assert SearchRequest.parse({"query": "q", "retrieval": mode}, LIMITS).retrieval == mode


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ([], "invalid_request", "JSON object"),
        ({}, "invalid_request", "'query' is required"),
        ({"query": 3}, "invalid_request", "'query' must be a string"),
        ({"query": "   "}, "invalid_request", "must not be empty"),
        ({"query": "x" * 51}, "invalid_request", "longer than 50"),
        ({"query": "q", "k": 0}, "invalid_request", "'k' must be between 1 and 20"),
        ({"query": "q", "k": 21}, "invalid_request", "'k' must be between"),
        ({"query": "q", "k": "5"}, "invalid_request", "'k' must be an integer"),
        ({"query": "q", "k": True}, "invalid_request", "'k' must be an integer"),
        ({"query": "q", "candidates": 201}, "invalid_request", "'candidates' must be between"),
        ({"query": "q", "k": 20, "candidates": 5}, "invalid_request", "must not exceed"),
        ({"query": "q", "rerank": "yes"}, "invalid_request", "'rerank' must be a boolean"),
        ({"query": "q", "user_id": ""}, "invalid_request", "'user_id'"),
        ({"query": "q", "colour": "red"}, "unknown_field", "colour"),
        ({"query": "q", "retrieval": "sparse"}, "invalid_request", "'retrieval' must be one of dense, bm25, hybrid"),
        ({"query": "q", "retrieval": ["dense"]}, "invalid_request", "'retrieval'"),
    ],
)
def test_rejections(body: object, code: str, fragment: str) -> None:
    with pytest.raises(RequestError) as info:
        SearchRequest.parse(body, LIMITS)
    assert info.value.status == 422 and info.value.code == code and fragment in info.value.message


# --- the text rule: lone surrogates and control characters (see the schemas docstring) ----------

EVENT = {"user_id": "u", "doc_id": "d1", "type": "click"}
SURROGATES = ["\ud800", "\udfff", "ab\udc00", "\udc00\ud800"]  # lone, in any order (json.loads keeps them)
ID_CONTROLS = ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"]  # category Cc: none in an id
QUERY_CONTROLS = ["\x00", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85"]  # Cc but tab, newline, CR


def refusal(parse, *args) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse(*args)
    error = info.value
    assert (error.status, error.code) == (422, "invalid_request")
    json.dumps(error.message, ensure_ascii=False).encode("utf-8")  # the answer itself can be sent
    return error


@pytest.mark.parametrize("bad", SURROGATES)
def test_a_lone_surrogate_is_refused_in_every_text_field(bad: str) -> None:
    assert "surrogate" in refusal(SearchRequest.parse, {"query": f"q{bad}"}, LIMITS).message
    assert "'user_id'" in refusal(SearchRequest.parse, {"query": "q", "user_id": bad}, LIMITS).message
    for name in ("user_id", "doc_id", "request_id"):
        message = refusal(parse_event, {**EVENT, name: bad}).message
        assert f"'{name}'" in message and "not encodable as UTF-8" in message
    assert "surrogate" in refusal(parse_user_id, bad).message


def test_the_json_escape_of_a_surrogate_reaches_the_rule() -> None:
    body = json.loads(b'{"query": "\\ud800 volcano"}')
    assert "U+D800 at index 0" in refusal(SearchRequest.parse, body, LIMITS).message


@pytest.mark.parametrize("bad", ID_CONTROLS)
def test_ids_hold_no_control_character(bad: str) -> None:
    assert "control" in refusal(SearchRequest.parse, {"query": "q", "user_id": f"ann{bad}"}, LIMITS).message
    for name in ("user_id", "doc_id", "request_id"):
        assert "control" in refusal(parse_event, {**EVENT, name: f"x{bad}y"}).message
    assert "control" in refusal(parse_user_id, f"{bad}ann").message


@pytest.mark.parametrize("bad", QUERY_CONTROLS)
def test_the_query_holds_no_control_character_but_tab_newline_cr(bad: str) -> None:
    assert "control characters other than tab" in refusal(SearchRequest.parse, {"query": f"a{bad}b"}, LIMITS).message


def test_pasted_whitespace_and_valid_oddities_are_accepted() -> None:
    assert SearchRequest.parse({"query": "line one\n\tline two\r\n"}, LIMITS).query.startswith("line one")
    for odd in ("\ufeff", "\u202e", "\uffff", "\U0010ffff", "😀", "é"):
        assert SearchRequest.parse({"query": f"q{odd}", "user_id": f"u{odd}"}, LIMITS).user_id == f"u{odd}"
    assert parse_user_id("ann.o'neil@example.com") == "ann.o'neil@example.com"


def test_blank_is_refused_whatever_the_whitespace() -> None:
    for blank in ("", " ", "\u3000\u00a0", "\n\t"):
        assert "non-blank" in refusal(SearchRequest.parse, {"query": blank}, LIMITS).message


def test_messages_quoting_client_text_stay_encodable() -> None:
    """Unknown field names and enum values are quoted escaped: a 422, never a 500 rendering it."""
    with pytest.raises(RequestError) as info:
        SearchRequest.parse({"query": "q", "\ud800\x00": 1}, LIMITS)
    assert info.value.code == "unknown_field" and "\\ud800\\x00" in info.value.message
    assert "\\ud800" in refusal(SearchRequest.parse, {"query": "q", "retrieval": "\ud800"}, LIMITS).message
    assert "..." in refusal(parse_event, {**EVENT, "type": "x" * 60_000}).message  # cut short


def test_null_is_a_type_error_where_the_field_is_not_nullable() -> None:
    for name in ("k", "candidates", "rerank"):
        assert f"'{name}' must be" in refusal(SearchRequest.parse, {"query": "q", name: None}, LIMITS).message
    assert SearchRequest.parse({"query": "q", "user_id": None, "retrieval": None}, LIMITS).user_id is None


def test_an_integral_float_is_an_integer_as_json_schema_reads_it() -> None:
    req = SearchRequest.parse({"query": "q", "k": 5.0, "candidates": 1e1}, LIMITS)
    assert (req.k, req.candidates) == (5, 10) and type(req.k) is int
    assert "'k' must be an integer" in refusal(SearchRequest.parse, {"query": "q", "k": 5.5}, LIMITS).message


# --- one description: the validator and the published schema agree -------------------------------

ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 12)
    | st.integers(-(2**53), 2**53)
    | st.sampled_from([0.0, 1.0, 5.0, 2.5, -1.0, 1e20])
    | st.floats(allow_nan=False, allow_infinity=False)
    # text with the characters the rule is about: controls, whitespace, ordinary ones (no surrogates:
    # the JSON Schema side cannot hold them; they have their own tests above)
    | st.text(st.sampled_from(["a", "Z", " ", "\t", "\n", "\x00", "\x1b", "\x85", "\u3000", "\ufeff"]), max_size=12)
    | st.sampled_from(["dense", "bm25", "hybrid", "click", "skip"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)


RULE_CHARACTERS = ["\x00", "\t", "\n", "\r", "\x0b", "\x1f", "\x7f", "\x85", "\x9f", "\xa0", "\u3000", "\ufeff", " "]


def valid_value(field) -> st.SearchStrategy:
    """A value meeting the field's rules (written from the rules in prose, not from the schema)."""
    if field.enum is not None:
        return st.sampled_from(field.enum)
    if field.type == "boolean":
        return st.booleans()
    if field.type == "integer":
        return st.integers(int(field.minimum or 0), int(field.maximum or 10**6))
    if field.type == "number":
        return st.floats(field.minimum or 0, 2e9)
    if field.type == "array":
        return st.lists(valid_value(field.of), min_size=field.min_items or 0, max_size=min(field.max_items or 3, 3))
    text = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=12)
    return text.filter(lambda t: t.strip() and len(t) <= (field.max_length or 10**6))


@st.composite
def bodies(draw: st.DrawFn, shape) -> object:
    """A valid body, then (mostly) one change: a field set to any JSON value, dropped, or an extra."""
    body = {f.name: draw(valid_value(f)) for f in shape.fields if f.required or draw(st.booleans())}
    change = draw(st.sampled_from(["none", "set", "set", "poke", "poke", "drop", "extra", "not-an-object"]))
    name = draw(st.sampled_from([f.name for f in shape.fields]))
    if change == "poke" and isinstance(body.get(name), str):  # one character the text rule is about
        at = draw(st.integers(0, len(body[name])))
        body[name] = body[name][:at] + draw(st.sampled_from(RULE_CHARACTERS)) + body[name][at:]
    elif change == "poke" and isinstance(body.get(name), list) and body[name]:  # the same, in one item
        items = list(body[name])
        i = draw(st.integers(0, len(items) - 1))
        at = draw(st.integers(0, len(items[i])))
        items[i] = items[i][:at] + draw(st.sampled_from(RULE_CHARACTERS)) + items[i][at:]
        body[name] = items
    elif change == "set":
        body[name] = draw(ANY_VALUE)
    elif change == "drop":
        body.pop(name, None)
    elif change == "extra":
        body[draw(st.text(min_size=1, max_size=4))] = draw(ANY_VALUE)
    elif change == "not-an-object":
        return draw(ANY_VALUE)
    return body


def agree(shape, body: object) -> None:
    try:
        shape.parse(body)
        accepted = True
    except RequestError:
        accepted = False
    assert accepted == jsonschema_rs.validator_for(shape.json_schema()).is_valid(body), body


SMALL = SearchLimits(max_query_chars=10, max_k=5, max_candidates=8)


@settings(max_examples=400, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(search_body(SMALL)))
def test_search_validation_and_schema_agree(body: object) -> None:
    agree(search_body(SMALL), body)


@settings(max_examples=400, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(EVENT_BODY))
def test_event_validation_and_schema_agree(body: object) -> None:
    agree(EVENT_BODY, body)


@pytest.mark.parametrize("body", [
    {"query": "q", "k": 5.0}, {"query": "q", "k": None}, {"query": "a\nb"}, {"query": "\u3000"},
    {"query": "x" * 10}, {"query": "x" * 11}, {"query": "q", "user_id": "a\tb"}, {"query": "q", "retrieval": None},
])
def test_search_validation_and_schema_agree_on_the_edges(body: dict) -> None:
    agree(search_body(SMALL), body)


# --- POST /v1/rerank ---------------------------------------------------------------------------

RERANK_LIMITS = SearchLimits(max_query_chars=50, max_rerank_documents=4, max_document_chars=30)


def test_rerank_defaults_and_fields() -> None:
    req = RerankRequest.parse({"query": "volcano", "documents": ["lava flows", "a risotto"]}, RERANK_LIMITS)
    assert req == RerankRequest("volcano", ("lava flows", "a risotto"), None, False, None)
    full = {"query": "q", "documents": ["d\n\tpasted"], "top_n": 4.0, "return_documents": True, "timeout_ms": 5,
            "model": "rerank-english-v3.0"}  # model: accepted from Cohere-style clients, ignored
    assert RerankRequest.parse(full, RERANK_LIMITS) == RerankRequest("q", ("d\n\tpasted",), 4, True, 5)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"query": "q"}, "'documents' is required"),
        ({"query": "q", "documents": []}, "'documents' must hold at least 1 item(s), got 0"),
        ({"query": "q", "documents": ["a"] * 5}, "'documents' must hold at most 4 items, got 5"),
        ({"query": "q", "documents": "a"}, "'documents' must be an array"),
        ({"query": "q", "documents": ["a", 3]}, "'documents[1]' must be a string"),
        ({"query": "q", "documents": ["a", None]}, "'documents[1]' must be a string"),
        ({"query": "q", "documents": ["a", "x" * 31]}, "'documents[1]' is longer than 30 characters"),
        ({"query": "q", "documents": ["a", " \u3000"]}, "'documents[1]' must be a non-blank string"),
        ({"query": "q", "documents": ["ok", "a\x00b"]}, "'documents[1]' must not contain control characters other"),
        ({"query": "q", "documents": ["ok", "lava \ud800"]}, "'documents[1]' contains a lone surrogate (U+D800"),
        ({"query": "\x1b", "documents": ["a"]}, "'query' must not contain control characters"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "'top_n' must be between 1 and 4"),
        ({"query": "q", "documents": ["a"], "top_n": 5}, "'top_n' must be between 1 and 4"),
        ({"query": "q", "documents": ["a"], "return_documents": "yes"}, "'return_documents' must be a boolean"),
        ({"query": "q", "documents": ["a"], "timeout_ms": 0}, "'timeout_ms' must be between 1 and 60000"),
        ({"query": "q", "documents": ["a"], "model": "a\nb"}, "'model' must not contain control characters"),
        ({"query": "q", "documents": ["a"], "texts": ["b"]}, "unknown field(s): 'texts'"),
    ],
)
def test_rerank_rejections(body: dict, fragment: str) -> None:
    with pytest.raises(RequestError) as info:
        RerankRequest.parse(body, RERANK_LIMITS)
    assert info.value.status == 422 and fragment in info.value.message
    json.dumps(info.value.message, ensure_ascii=False).encode("utf-8")  # the answer itself can be sent


def test_rerank_schema_bounds_each_document() -> None:
    schema = rerank_body(RERANK_LIMITS).json_schema()
    documents = schema["properties"]["documents"]
    assert schema["required"] == ["query", "documents"] and schema["additionalProperties"] is False
    assert (documents["minItems"], documents["maxItems"]) == (1, 4)
    items = documents["items"]
    assert (items["type"], items["maxLength"], items["minLength"]) == ("string", 30, 1) and "pattern" in items
    assert schema["properties"]["top_n"]["maximum"] == 4


@settings(max_examples=400, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(rerank_body(RERANK_LIMITS)))
def test_rerank_validation_and_schema_agree(body: object) -> None:
    agree(rerank_body(RERANK_LIMITS), body)
