"""The HTTP contract, described once: every request and response body is a `Shape` (a table of
`Field`s: name, JSON type, required, bounds, enum, max length, text rule), and from that one
description come both the request validation (raw JSON in, typed request or a `RequestError`
naming the field and the rule out) and the JSON Schemas that `openapi` publishes. Nothing past
this module sees raw JSON, and the published document cannot drift from what is enforced.

Hand-written rather than a schema library: the rules are few, and every message should say
exactly which field is wrong and why.

The text rule, for every request string (query, each rerank document, user_id, doc_id, request_id,
model, the path user id):

- it must be encodable as UTF-8. JSON can spell a lone surrogate (`"\\ud800"`), which no
  tokenizer, log line or Redis key can hold: it is a 422 here, not a 500 deep inside;
- it holds no control character (Unicode category Cc: C0, DEL, C1). Ids end up in log lines,
  event-log records and Redis keys, where a NUL or a newline truncates or forges them. Free text
  (the query, a rerank document) alone may carry tab, newline and carriage return (pasted text;
  the tokenizers read them as spaces);
- it is not blank (empty or only whitespace) and has at most `max_length` characters.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ranking_gateway.core.config import RETRIEVAL_MODES, RetrievalMode, SearchLimits
from ranking_gateway.personalization.events import (
    DEFAULT_EVENT_WEIGHTS,
    MAX_CLOCK_SKEW_S,
    MAX_ID_LENGTH,
    Event,
)

JsonType = Literal["string", "integer", "number", "boolean", "object", "array"]
MAX_BODY_BYTES = 64 * 1024  # a larger request body is a 413, read no further
ABSENT: Any = object()  # a field missing from the body (unlike one that is null)


class RequestError(Exception):
    """A client error: becomes `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # e.g. WWW-Authenticate on a 401


def invalid(message: str) -> RequestError:
    return RequestError(422, "invalid_request", message)


def _show(value: object, limit: int = 40) -> str:
    """A client's value inside a message: repr escapes surrogates and control characters (the
    message must itself be encodable), and a hostile 60 KB value is cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the text rule -----------------------------------------------------------------------------


def _char_class(codes: Iterable[int]) -> str:
    """A regex character class body (`\\u0000-\\u001f...`) that Python's `re`, ECMA-262 and Rust's
    regex (the JSON Schema validators) all read the same way."""
    ranges: list[list[int]] = []
    for code in sorted(set(codes)):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


CONTROL = frozenset([*range(0x00, 0x20), *range(0x7F, 0xA0)])  # category Cc
# what str.strip() removes, so the schema's "not blank" is exactly the validator's (all <= U+3000)
WHITESPACE = frozenset(code for code in range(0x3001) if chr(code).isspace())
SURROGATES = "\\ud800-\\udfff"  # not in the published pattern: the validators cannot hold one


@dataclass(frozen=True)
class TextRule:
    """What a request string may hold beyond its JSON type; see the module docstring."""

    name: str
    allowed_controls: str = ""  # control characters it may carry after all

    @functools.cached_property
    def forbidden(self) -> str:
        return _char_class(CONTROL - {ord(c) for c in self.allowed_controls})

    @functools.cached_property
    def _refused(self) -> re.Pattern[str]:
        return re.compile(f"[{SURROGATES}{self.forbidden}]")

    @property
    def pattern(self) -> str:
        """The published JSON Schema pattern: no forbidden character, at least one that is not
        whitespace. Lone surrogates are left to the description (no JSON Schema tool can hold one)."""
        visible = _char_class(WHITESPACE | CONTROL)
        return f"^[^{self.forbidden}]*[^{visible}][^{self.forbidden}]*$"

    def problem(self, value: str) -> str | None:
        """Why `value` breaks the rule, or None."""
        bad = self._refused.search(value)
        if bad is not None:
            char, at = bad.group(), bad.start()
            if "\ud800" <= char <= "\udfff":
                return f"contains a lone surrogate (U+{ord(char):04X} at index {at}), which is not encodable as UTF-8"
            allowed = " other than tab, newline and carriage return" if self.allowed_controls else ""
            return f"must not contain control characters{allowed} (U+{ord(char):04X} at index {at})"
        if not value.strip():
            return "must be a non-blank string: it must not be empty or only whitespace"
        return None

    def describe(self) -> str:
        but = " other than tab, newline and carriage return" if self.allowed_controls else ""
        return f"{self.name}: non-blank, valid UTF-8 (no lone surrogates), no control characters{but}."


ID_TEXT = TextRule("An id")
QUERY_TEXT = TextRule("Free text", allowed_controls="\t\n\r")


# --- the body description ----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One property of a JSON object: its JSON type and every rule it must meet."""

    name: str
    type: JsonType
    required: bool = False
    nullable: bool = False
    default: Any = None  # a request field's value when absent (or null, where nullable)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    enum: tuple[Any, ...] | None = None
    text: TextRule | None = None  # request strings only
    # array items (a `Field` checks each request item by its rules; its name is unused); an
    # object's shape (None: any object)
    of: Shape | Field | JsonType | None = None
    min_items: int | None = None  # arrays
    max_items: int | None = None
    description: str = ""

    def parse(self, value: Any = ABSENT, *, name: str | None = None) -> Any:
        """A request field's value, checked. Absent, it takes its default; null, too where
        nullable (else a type error, as the schema says); a required one may be neither.
        `name` is what messages call it (an array item: `documents[3]`)."""
        name = self.name if name is None else name
        if value is ABSENT or value is None:
            if self.required:
                raise invalid(self._enum_message(None, name) if self.enum else f"'{name}' is required")
            if value is ABSENT or self.nullable:
                return self.default
            raise invalid(f"'{name}' must be {_NOUN[self.type]}")
        if self.enum is not None:
            if not any(type(value) is type(option) and value == option for option in self.enum):
                raise invalid(self._enum_message(value, name))
            return value
        if self.type == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one number type: 5.0 is the integer 5, as JSON Schema reads it
        if not _IS[self.type](value):
            raise invalid(f"'{name}' must be {_NOUN[self.type]}" + (" or null" if self.nullable else ""))
        if self.type in ("integer", "number"):
            low, high = self.minimum, self.maximum
            if low is not None and high is not None and not low <= value <= high:
                raise invalid(f"'{name}' must be between {low} and {high}, got {_show(value)}")
            if low is not None and value < low:
                raise invalid(f"'{name}' must be at least {low}, got {_show(value)}")
            if high is not None and value > high:
                raise invalid(f"'{name}' must be at most {high}, got {_show(value)}")
        if self.type == "string":
            problem = self.text.problem(value) if self.text else None
            if problem:
                raise invalid(f"'{name}' {problem}")
            if self.max_length is not None and len(value) > self.max_length:
                raise invalid(f"'{name}' is longer than {self.max_length} characters")
        if self.type == "array":
            if self.min_items is not None and len(value) < self.min_items:
                raise invalid(f"'{name}' must hold at least {self.min_items} item(s), got {len(value)}")
            if self.max_items is not None and len(value) > self.max_items:
                raise invalid(f"'{name}' must hold at most {self.max_items} items, got {len(value)}")
            if isinstance(self.of, Field):
                value = [self.of.parse(item, name=f"{name}[{i}]") for i, item in enumerate(value)]
        return value

    def _enum_message(self, value: Any, name: str) -> str:
        options = ", ".join(str(option) for option in self.enum or ())
        null = " or null" if self.nullable else ""
        return f"'{name}' must be one of {options}{null}, got {_show(value)}"

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": [self.type, "null"] if self.nullable else self.type}
        if self.enum is not None:
            schema["enum"] = [*self.enum, *([None] if self.nullable else [])]
        for key, value in (
            ("minimum", self.minimum), ("maximum", self.maximum), ("maxLength", self.max_length),
            ("minItems", self.min_items), ("maxItems", self.max_items),
        ):
            if value is not None:
                schema[key] = value
        if self.text is not None:
            schema["minLength"] = 1
            schema["pattern"] = self.text.pattern
        if self.default is not None:
            schema["default"] = self.default
        if self.type == "array" and self.of is not None:
            schema["items"] = self.of.json_schema() if isinstance(self.of, (Shape, Field)) else {"type": self.of}
        if self.type == "object" and isinstance(self.of, Shape):
            schema.update({k: v for k, v in self.of.json_schema().items() if k != "type"})
        description = " ".join(part for part in (self.description, self.text.describe() if self.text else "") if part)
        if description:
            schema["description"] = description
        return schema


_IS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    # a JSON number: json.loads also reads NaN and Infinity, which are refused here
    "number": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v)),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}
_NOUN = {
    "string": "a string",
    "integer": "an integer",
    "number": "a finite number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
}


@dataclass(frozen=True)
class Shape:
    """A JSON object: a table of fields (closed: unknown ones refused), or with `values` a map
    from any key to values of one type."""

    name: str
    fields: tuple[Field, ...] = ()
    values: JsonType | None = None
    description: str = ""
    closed: bool = True

    def parse(self, body: Any) -> dict[str, Any]:
        """A request body's fields by name, each checked in table order, defaults filled in."""
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object")
        unknown = sorted(set(body) - {f.name for f in self.fields})
        if unknown:
            raise RequestError(422, "unknown_field", f"unknown field(s): {', '.join(map(_show, unknown))}")
        return {f.name: f.parse(body.get(f.name, ABSENT)) for f in self.fields}

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object"}
        if self.values is not None:
            schema["additionalProperties"] = {"type": self.values}
        else:
            schema["properties"] = {f.name: f.json_schema() for f in self.fields}
            required = [f.name for f in self.fields if f.required]
            if required:
                schema["required"] = required
            if self.closed:
                schema["additionalProperties"] = False
        if self.description:
            schema["description"] = self.description
        return schema


def _id(name: str, *, required: bool = False, description: str = "") -> Field:
    return Field(
        name, "string", required=required, nullable=not required, max_length=MAX_ID_LENGTH, text=ID_TEXT,
        description=description,
    )


# --- request bodies ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def search_body(limits: SearchLimits) -> Shape:
    """`POST /v1/search`: the bounds are the running gateway's `SearchLimits`."""
    return Shape(
        "SearchRequest",
        (
            Field("query", "string", required=True, max_length=limits.max_query_chars, text=QUERY_TEXT),
            Field("k", "integer", default=limits.default_k, minimum=1, maximum=limits.max_k,
                  description="Results to answer; at most `candidates`."),
            Field("candidates", "integer", default=limits.default_candidates, minimum=1,
                  maximum=limits.max_candidates, description="First-stage candidates to rank."),
            Field("rerank", "boolean", default=True),
            _id("user_id", description="Personalise for this user (null: nobody)."),
            Field("retrieval", "string", nullable=True, enum=RETRIEVAL_MODES,
                  description="First stage for this request (null: the gateway's `serve --retrieval`)."),
            Field("timeout_ms", "integer", nullable=True, minimum=1, maximum=limits.max_timeout_ms,
                  description="This search's deadline (null: `serve --deadline-ms`). A stage that cannot "
                  "finish in what is left is dropped and the answer is flagged `degraded`."),
        ),
        description="`k` must not exceed `candidates`; `bm25`/`hybrid` need artifacts with a BM25 index (else 422).",
    )


@functools.lru_cache(maxsize=8)
def rerank_body(limits: SearchLimits) -> Shape:
    """`POST /v1/rerank`, in the shape TEI, Infinity and Cohere clients send: the bounds are the
    running gateway's `SearchLimits`, and every document is under the query's text rule."""
    document = Field("document", "string", max_length=limits.max_document_chars, text=QUERY_TEXT)
    return Shape(
        "RerankRequest",
        (
            Field("query", "string", required=True, max_length=limits.max_query_chars, text=QUERY_TEXT),
            Field("documents", "array", required=True, of=document, min_items=1,
                  max_items=limits.max_rerank_documents, description="The texts to score against the query."),
            Field("top_n", "integer", nullable=True, minimum=1, maximum=limits.max_rerank_documents,
                  description="Results to answer, the best first (null: all; more than the documents: all)."),
            Field("return_documents", "boolean", default=False,
                  description="Echo each result's text as `document`."),
            Field("timeout_ms", "integer", nullable=True, minimum=1, maximum=limits.max_timeout_ms,
                  description="This call's deadline (null: `serve --deadline-ms`); past it, 504 `deadline_exceeded`."),
            _id("model", description="Accepted for clients that always send one, and ignored: the gateway "
                "serves its build's reranker."),
        ),
    )


EVENT_BODY = Shape(
    "Event",
    (
        _id("user_id", required=True),
        _id("doc_id", required=True, description="An id of the served corpus (else 404 unknown_document)."),
        Field("type", "string", required=True, enum=tuple(DEFAULT_EVENT_WEIGHTS)),
        _id("request_id", description="The search answer's request_id the event is about."),
        Field("position", "integer", nullable=True, minimum=0, description="0-based rank in that answer."),
        Field("ts", "number", nullable=True, minimum=0,
              description=f"Seconds since the epoch (null: now); at most {MAX_CLOCK_SKEW_S:.0f} s in the future."),
    ),
)

USER_ID_PATH = _id("user_id", required=True)


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int
    candidates: int
    rerank: bool
    user_id: str | None
    retrieval: RetrievalMode | None = None  # None: the gateway's `serve --retrieval`
    timeout_ms: int | None = None  # None: the gateway's `serve --deadline-ms`

    @classmethod
    def parse(cls, body: Any, limits: SearchLimits) -> SearchRequest:
        v = search_body(limits).parse(body)
        if v["k"] > v["candidates"]:
            raise invalid(f"'k' ({v['k']}) must not exceed 'candidates' ({v['candidates']})")
        return cls(v["query"], v["k"], v["candidates"], v["rerank"], v["user_id"], v["retrieval"], v["timeout_ms"])


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: tuple[str, ...]
    top_n: int | None = None  # None: every document
    return_documents: bool = False
    timeout_ms: int | None = None  # None: the gateway's `serve --deadline-ms`

    @classmethod
    def parse(cls, body: Any, limits: SearchLimits) -> RerankRequest:
        v = rerank_body(limits).parse(body)
        return cls(v["query"], tuple(v["documents"]), v["top_n"], v["return_documents"], v["timeout_ms"])


def parse_user_id(value: object) -> str:
    """The same rule for a user id in a path (`/v1/users/{id}`) as in an event body."""
    return USER_ID_PATH.parse(value)


def parse_event(body: Any, *, doc_exists: Callable[[str], bool] | None = None, now: float | None = None) -> Event:
    """A `POST /v1/events` body; shape errors (422) are checked before the document's
    existence (404 `unknown_document`), so a malformed body never reports a missing document."""
    v = EVENT_BODY.parse(body)
    now = time.time() if now is None else now
    ts = now if v["ts"] is None else v["ts"]
    if ts > now + MAX_CLOCK_SKEW_S:
        raise invalid(f"'ts' is more than {MAX_CLOCK_SKEW_S:.0f} s in the future")
    if doc_exists is not None and not doc_exists(v["doc_id"]):
        raise RequestError(404, "unknown_document", f"no document with id {v['doc_id']!r}")
    return Event(
        user_id=v["user_id"],
        doc_id=v["doc_id"],
        type=v["type"],
        ts=float(ts),
        request_id=v["request_id"],
        position=v["position"],
    )


# --- response bodies ---------------------------------------------------------------------------

ERROR = Shape(
    "Error",
    (
        Field("error", "object", required=True, of=Shape(
            "ErrorDetail",
            (
                Field("code", "string", required=True, description="Stable, machine-readable."),
                Field("message", "string", required=True, description="Which field or rule, for people."),
            ),
        )),
    ),
)

_HIT = Shape(
    "SearchHit",
    (
        Field("id", "string", required=True),
        Field("score", "number", required=True, description="What the answer is ordered by."),
        Field("retrieval_score", "number", required=True, description="The first stage's score."),
        Field("title", "string", required=True),
        Field("snippet", "string", required=True),
    ),
)
_TIMINGS = Shape(
    "Timings",
    tuple(
        Field(stage, "number", required=stage not in ("lexical", "personalize"), minimum=0)
        for stage in ("encode", "lexical", "retrieve", "rerank", "personalize", "total")
    ),
    description="Milliseconds per stage; `lexical` with BM25, `personalize` for a user with a profile.",
)
# why an answer is `degraded`: each names the stage that was skipped and why (also the
# `reason` label of the degraded-responses metric)
DEGRADED_REASONS = (
    "encoder_unavailable",  # the query encoder failed: BM25 alone answered
    "encoder_deadline",  # the query encoder was late: BM25 alone answered
    "reranker_unavailable",  # the reranker failed: retrieval order
    "rerank_deadline",  # the rerank could not finish in time: cancelled, retrieval order
    "personalization_unavailable",  # the profile store failed: not personalised
    "personalization_deadline",  # the profile store was late: not personalised
)

SEARCH_RESPONSE = Shape(
    "SearchResponse",
    (
        Field("request_id", "string", required=True),
        Field("results", "array", required=True, of=_HIT),
        Field("cached", "boolean", required=True),
        Field("degraded", "boolean", required=True),
        Field("degraded_reasons", "array", required=True, of="string",
              description="Why `degraded`, one code a skipped stage (empty when not degraded): "
              + ", ".join(f"`{r}`" for r in DEGRADED_REASONS) + "."),
        Field("reranked", "boolean", required=True),
        Field("personalized", "boolean", required=True),
        Field("retrieval", "string", required=True, enum=RETRIEVAL_MODES),
        Field("timings_ms", "object", required=True, of=_TIMINGS),
    ),
)
RERANK_RESPONSE = Shape(
    "RerankResponse",
    (
        Field("request_id", "string", required=True),
        Field("results", "array", required=True, of=Shape(
            "RerankResult",
            (
                Field("index", "integer", required=True, minimum=0, description="The document's place in `documents`."),
                Field("relevance_score", "number", required=True,
                      description="The reranker's raw score (a cross-encoder's logit, late interaction's "
                      "MaxSim): comparable within one build, not a probability."),
                Field("document", "string", description="The document's text, with `return_documents`."),
            ),
        ), description="By `relevance_score`, the best first (ties in `documents` order), `top_n` of them."),
        Field("timings_ms", "object", required=True, of=Shape(
            "RerankTimings",
            (Field("rerank", "number", required=True, minimum=0), Field("total", "number", required=True, minimum=0)),
            description="Milliseconds: scoring (tokenisation and Triton), and the whole call (admission included).",
        )),
    ),
)
EVENT_ACCEPTED = Shape("EventAccepted", (Field("accepted", "boolean", required=True, enum=(True,)),))
PROFILE = Shape(
    "Profile",
    (
        Field("user_id", "string", required=True),
        Field("events", "object", required=True, of=Shape("EventCounts", values="integer")),
        Field("strength", "number", required=True),
        Field("centroid_norm", "number", required=True),
        Field("half_life_s", "number", required=True),
        Field("recent", "array", required=True, of=Shape(
            "RecentEvent",
            (
                Field("doc_id", "string", required=True),
                Field("type", "string", required=True, enum=tuple(DEFAULT_EVENT_WEIGHTS)),
                Field("weight", "number", required=True),
                Field("ts", "number", required=True),
            ),
        )),
        Field("updated_at", "number", required=True),
        Field("nearest_documents", "array", required=True, of=Shape(
            "NearDocument", (Field("doc_id", "string", required=True), Field("similarity", "number", required=True))
        )),
    ),
)
ERASURE = Shape(
    "Erasure",
    (
        Field("user_id", "string", required=True),
        Field("profile_deleted", "boolean", required=True),
        Field("records_removed", "integer", required=True, minimum=0),
    ),
)
HEALTH = Shape("Health", (Field("status", "string", required=True, enum=("ok",)),))
READINESS = Shape(
    "Readiness",
    (
        Field("ready", "boolean", required=True),
        Field("models", "object", required=True, of=Shape("ModelReadiness", values="boolean")),
        Field("documents", "integer", required=True, minimum=0),
        Field("version", "string", required=True),
        Field("retrieval", "string", required=True, enum=RETRIEVAL_MODES),
        Field("rerank", "object", required=True, nullable=True, of=Shape(
            "RerankPlan",
            (
                Field("alpha", "number", required=True, minimum=0, maximum=1),
                Field("depth", "integer", required=True, minimum=1),
                Field("max_length", "integer", required=True, minimum=1),
                Field("kind", "string", required=True),
            ),
        )),
    ),
)
OPENAPI = Shape(
    "OpenAPI",
    (
        Field("openapi", "string", required=True),
        Field("info", "object", required=True),
        Field("paths", "object", required=True),
        Field("components", "object"),
    ),
    closed=False,
)

# `POST /v1/admin/deploy` (serving.deploy): a live swap to other artifacts or personaliser weights
DEPLOY_BODY = Shape(
    "DeployRequest",
    (
        Field("artifacts", "string", nullable=True, max_length=4096,
              description="Absolute path, on the gateway's machine, of a directory written by `build`."),
        Field("personalizer_weights", "string", nullable=True, max_length=4096,
              description="Absolute path of a `train-personalizer` weights JSON (alone: no Triton change)."),
        Field("rollback", "boolean", default=False, description="Swap back to the version served before the last swap."),
        Field("warm", "integer", default=0, minimum=0, maximum=1000,
              description="Warm the new version's cache with this many of the most frequent recent searches."),
        Field("drain_timeout_s", "number", nullable=True, minimum=0, maximum=600,
              description="How long the old version's requests may run on before its models are unloaded."),
    ),
)
DEPLOY_REPORT = Shape(
    "DeployReport",
    (
        Field("status", "string", required=True, enum=("swapped",)),
        Field("rollback", "boolean", required=True),
        Field("from", "object", required=True),
        Field("to", "object", required=True),
        Field("switched_after_ms", "number", required=True),
        Field("timings_ms", "object", required=True),
    ),
    closed=False,
)
DEPLOY_STATUS = Shape(
    "DeployStatus",
    (
        Field("current", "object", required=True),
        Field("previous", "object", required=True, nullable=True),
        Field("live_models", "boolean", required=True),
        Field("deploying", "boolean", required=True),
    ),
)
