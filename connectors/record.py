"""The record every topic carries: a frozen dataclass read from and written to JSON, strictly.

Reading is strict: a missing field, an unknown field, a wrong type, a timestamp without a UTC offset
or a value out of range raises :class:`ValidationError`, whose message names the field and the
problem and whose ``reason`` (:class:`Reason`) is a short stable code, the dead-letter reason.
Reading any bytes raises nothing else. The concrete records are in :mod:`connectors.schemas`.

>>> parse_time("2024-05-01T12:00:00Z").timestamp(), format_time(parse_time("2024-05-01T14:00:00+02:00"))
(1714564800.0, '2024-05-01T12:00:00.000000Z')
>>> parse_time("2024-05-01T12:00:00")
Traceback (most recent call last):
...
moodshift.connectors.record.ValidationError: time: '2024-05-01T12:00:00' has no UTC offset (add Z)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, ClassVar, Self

class Reason(StrEnum):
    """Dead-letter reason codes: short, stable, safe to alert and aggregate on."""

    MALFORMED_JSON = "malformed_json"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_TIMESTAMP = "bad_timestamp"
    CLOCK_SKEW = "clock_skew"
    TEXT_TOO_LONG = "text_too_long"
    UNDECODABLE_MEDIA = "undecodable_media"
    FETCH_REFUSED = "fetch_refused"
    FETCH_FAILED = "fetch_failed"
    OVERSIZED = "oversized"
    LATE = "late"
    INTERNAL_ERROR = "internal_error"


class Rejected(Exception):
    """Input that cannot become an event; ``reason`` is its dead-letter :class:`Reason`.

    The message is made writable as UTF-8 (it may quote the input).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(writable(message))
        self.reason = str(reason)


def writable(text: str) -> str:
    """``text`` with lone surrogates replaced, so that it encodes as UTF-8.

    >>> writable("ok " + chr(0xD800))
    'ok ?'
    """
    return text.encode("utf-8", "replace").decode("utf-8")


class ValidationError(Rejected, ValueError):
    """A record field is missing, unknown, of the wrong type or out of range.

    >>> str(ValidationError("user_id", "must not be empty"))
    'user_id: must not be empty'
    """

    def __init__(self, field: str, problem: str, reason: str = Reason.BAD_VALUE) -> None:
        super().__init__(reason, f"{field}: {problem}")
        self.field = field
        self.problem = problem


# -- timestamps ------------------------------------------------------------------------------------

EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)  # times travel as ms since the epoch
LATEST_TIME = datetime(3000, 1, 1, tzinfo=timezone.utc)


def parse_time(value: Any, field: str = "time") -> datetime:
    """An ISO-8601 string with a UTC offset (``Z`` or ``+hh:mm``) → an aware UTC datetime."""
    if not isinstance(value, str):
        raise ValidationError(field, f"expected an ISO-8601 string, got {_type_name(value)}", Reason.WRONG_TYPE)
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValidationError(field, f"{value[:40]!r} has no UTC offset (add Z)", Reason.BAD_TIMESTAMP)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError) as error:  # OverflowError: an offset past year 1 or 9999
        if isinstance(error, ValidationError):
            raise
        raise ValidationError(field, f"{value[:40]!r} is not an ISO-8601 timestamp", Reason.BAD_TIMESTAMP) from None


def format_time(value: datetime) -> str:
    """An aware datetime → ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- the generic record ----------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Record:
    """Base of every wire record: strict JSON decoding driven by the dataclass's type hints.

    Subclasses are frozen dataclasses that name their ``SCHEMA_VERSION``, the field holding their event
    time (``TIME_FIELD``) and the field that is their Kafka key (``KEY_FIELD``), and may check values in
    ``_check``.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    TIME_FIELD: ClassVar[str]
    KEY_FIELD: ClassVar[str]

    def __post_init__(self) -> None:
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValidationError(name, "must be timezone-aware", Reason.BAD_TIMESTAMP)
        time_field = getattr(self, "TIME_FIELD", None)
        if time_field and not EARLIEST_TIME <= getattr(self, time_field) < LATEST_TIME:
            raise ValidationError(time_field, f"must lie in [{EARLIEST_TIME.year}, {LATEST_TIME.year})",
                                  Reason.BAD_TIMESTAMP)
        self._check()

    def _check(self) -> None:
        """Value checks beyond types; raise :class:`ValidationError`."""

    # Not named ``key``/``event_time``: a dataclass would take an inherited property as a field default.
    @property
    def kafka_key(self) -> str:
        """The Kafka key: user id (posts, videos), location id (weather), symbol (market)."""
        return getattr(self, self.KEY_FIELD)

    @property
    def event_time_s(self) -> float:
        """Event time (``TIME_FIELD``) as float seconds since the epoch."""
        return getattr(self, self.TIME_FIELD).timestamp()

    @property
    def event_time_ms(self) -> int:
        """Event time as integer milliseconds since the epoch (Kafka's and the windows' unit)."""
        return round(getattr(self, self.TIME_FIELD).timestamp() * 1000)

    # -- encoding ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": self.SCHEMA_VERSION}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _encode(getattr(self, f.name))
        return out

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes | str) -> Self:
        return cls.from_dict(parse_json_object(raw))

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Self:
        if not isinstance(data, dict):
            raise ValidationError(path or "$", f"expected an object, got {_type_name(data)}", Reason.WRONG_TYPE)
        version = data.get("schema_version", cls.SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= cls.SCHEMA_VERSION:
            raise ValidationError(
                path + "schema_version", f"{version!r} is not a supported version (1..{cls.SCHEMA_VERSION})",
                Reason.UNSUPPORTED_VERSION,
            )
        values: dict[str, Any] = {}
        for field, decode, required in _field_decoders(cls):
            if field in data:
                values[field] = decode(data[field], path + field)
            elif required:
                raise ValidationError(path + field, "is required", Reason.MISSING_FIELD)
        if len(values) + ("schema_version" in data) < len(data):
            unknown = sorted(data.keys() - values.keys() - {"schema_version"})[0]
            raise ValidationError(path + unknown, "is not a field of " + cls.__name__, Reason.UNKNOWN_FIELD)
        try:
            return cls(**values)
        except ValidationError as error:  # a value check of a nested record: name its full path
            if not path:
                raise
            raise ValidationError(path + error.field, error.problem, error.reason) from None


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_decoders(cls: type) -> tuple[tuple[str, Decoder, bool], ...]:
    """A record class's fields: name, the decoder of its type, whether it is required. Cached:
    ``get_type_hints`` evaluates every annotation string again on each call (a tenth of a worker's
    time), and reading the hints for every value was a third of decoding a post."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _decoder(hints[f.name]),
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    """UTF-8 JSON text → a dict, or :class:`ValidationError` with reason ``malformed_json``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # ValueError: bad UTF-8 or JSON, an int of 4300+ digits
        raise ValidationError("$", f"not valid UTF-8 JSON ({str(error)[:200]})", Reason.MALFORMED_JSON) from None
    if not isinstance(data, dict):
        raise ValidationError("$", f"expected a JSON object, got {_type_name(data)}", Reason.WRONG_TYPE)
    return data


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Record):
        data = value.to_dict()
        data.pop("schema_version")
        return data
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


#: Checks a JSON value against a field's type and converts it: ``decode(value, field path)``.
Decoder = typing.Callable[[Any, str], Any]


@functools.cache
def _decoder(hint: Any) -> Decoder:
    """The decoder of one annotated type, built once per type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None
        (inner,) = [a for a in args if a is not type(None)]
        decode_inner = _decoder(inner)
        return lambda value, name: None if value is None else decode_inner(value, name)
    if origin is tuple:  # tuple[X, ...]
        decode_item = _decoder(args[0])

        def decode_tuple(value: Any, name: str) -> tuple:
            if not isinstance(value, list):
                raise ValidationError(name, f"expected a list, got {_type_name(value)}", Reason.WRONG_TYPE)
            return tuple(decode_item(item, f"{name}[{i}]") for i, item in enumerate(value))
        return decode_tuple
    if hint is datetime:
        return parse_time
    if isinstance(hint, type) and issubclass(hint, Record):
        return lambda value, name: hint.from_dict(value, name + ".")
    if hint is float:
        return _decode_float
    if hint is str:
        return _decode_str
    expected = {int: "an integer", bool: "a boolean"}[hint]

    def decode_exactly(value: Any, name: str) -> Any:
        if type(value) is not hint:
            raise ValidationError(name, f"expected {expected}, got {_type_name(value)}", Reason.WRONG_TYPE)
        return value
    return decode_exactly


def _decode_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(name, f"expected a number, got {_type_name(value)}", Reason.WRONG_TYPE)
    if not math.isfinite(value):
        raise ValidationError(name, "must be finite")
    return float(value)


def _decode_str(value: Any, name: str) -> str:
    if type(value) is not str:
        raise ValidationError(name, f"expected a string, got {_type_name(value)}", Reason.WRONG_TYPE)
    # isascii() reads a flag: only other text is encoded to find a lone surrogate.
    if not value.isascii() and writable(value) != value:
        raise ValidationError(name, "is not valid Unicode (a lone surrogate)")
    return value


def require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise ValidationError(field, problem)


def require_id(value: str, field: str) -> None:
    require(bool(value.strip()), field, "must not be empty")
    require(len(value) <= 256, field, "must be at most 256 characters")
