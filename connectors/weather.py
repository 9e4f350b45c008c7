"""Open-Meteo weather per configured location: current conditions and past hourly values.

One ``GET {open_meteo_url}/v1/forecast`` per location asks for ``current`` and ``hourly``
temperature, humidity, precipitation, wind speed and WMO weather code in UTC (``past_hours=3``,
``forecast_hours=1``). Hourly values later than now are forecasts and are not sent. An observation
equal to the one last sent for the same location, kind and hour is not sent again. A body that is not
the documented shape goes to the dead letters (source ``open-meteo``) and the poll backs off. Each
request must be answered in full within ``fetch_timeout_seconds`` (:class:`DeadlineSession`).

>>> parse_locations("berlin:52.52:13.41, nyc:40.71:-74.01")
(Location(id='berlin', latitude=52.52, longitude=13.41), Location(id='nyc', latitude=40.71, longitude=-74.01))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import requests

from moodshift.connectors.live import ChangeFilter, DeadlineSession, SourceError, http_get
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.record import Reason, Rejected, ValidationError, utc_now
from moodshift.connectors.schemas import WeatherObservation
from moodshift.connectors.topics import WEATHER
from moodshift.connectors.settings import ConnectorSettings

# Open-Meteo variable → WeatherObservation field.
VARIABLES = {
    "temperature_2m": "temperature_c",
    "relative_humidity_2m": "relative_humidity_pct",
    "precipitation": "precipitation_mm",
    "wind_speed_10m": "wind_speed_kmh",
    "weather_code": "weather_code",
}


@dataclass(frozen=True)
class Location:
    """A place to observe, as configured in ``weather_locations`` (``id:latitude:longitude``)."""

    id: str
    latitude: float
    longitude: float


def parse_locations(spec: str) -> tuple[Location, ...]:
    locations = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        try:
            name, lat, lon = entry.rsplit(":", 2)
            locations.append(Location(name, float(lat), float(lon)))
        except ValueError:
            raise ValueError(f"weather_locations: {entry!r} is not id:latitude:longitude") from None
    return tuple(locations)


class OpenMeteoSource:
    """Polls Open-Meteo for every location and sends new :class:`WeatherObservation` s keyed by location.

    >>> from moodshift.connectors.producer import RecordingClient
    >>> settings = ConnectorSettings(weather_locations="berlin:52.52:13.41")
    >>> source = OpenMeteoSource(settings, EventProducer(settings, "open-meteo", client=RecordingClient()))
    >>> [o.temperature_c for o in source.observations(source.locations[0], {"utc_offset_seconds": 0,
    ...     "current": {"time": "2024-05-01T12:00", "temperature_2m": 18.5}})]
    [18.5]
    """

    name = "open-meteo"

    def __init__(
        self, settings: ConnectorSettings, producer: EventProducer, session: requests.Session | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.locations = parse_locations(settings.weather_locations)
        if not self.locations:
            raise ValueError("weather_locations: no location configured (id:latitude:longitude,...)")
        self.session = session or DeadlineSession()
        self.changes = ChangeFilter()
        self.now = now

    def poll(self) -> int:
        sent = 0
        for location in self.locations:
            for observation in self.fetch(location):
                value = tuple(getattr(observation, f) for f in VARIABLES.values())
                if self.changes.changed((location.id, observation.kind, observation.observed_time), value):
                    sent += self.producer.send_event(WEATHER, observation)
        return sent

    def fetch(self, location: Location) -> list[WeatherObservation]:
        variables = ",".join(VARIABLES)
        response = http_get(
            self.session, self.settings.open_meteo_url.rstrip("/") + "/v1/forecast",
            params={"latitude": location.latitude, "longitude": location.longitude, "current": variables,
                    "hourly": variables, "timezone": "UTC", "past_hours": 3, "forecast_hours": 1},
            timeout=self.settings.fetch_timeout_seconds,
        )
        try:
            return self.observations(location, json.loads(response.content))
        except (json.JSONDecodeError, UnicodeDecodeError):
            error: Rejected = ValidationError("$", "the body is not JSON", Reason.MALFORMED_JSON)
        except Rejected as rejected:
            error = rejected
        self.producer.send_dead_letter(response.content, topic=WEATHER, reason=error.reason,
                                       message=f"{location.id}: {error}", key=location.id)
        raise SourceError("malformed_body", f"Open-Meteo answered an unexpected body for {location.id}: {error}")

    def observations(self, location: Location, body: Any) -> list[WeatherObservation]:
        """The observations in an Open-Meteo answer; :class:`ValidationError` if it is not that shape."""
        if not isinstance(body, dict):
            raise ValidationError("$", "expected a JSON object", Reason.WRONG_TYPE)
        offset = timedelta(seconds=_typed(body.get("utc_offset_seconds", 0), int, "utc_offset_seconds"))
        found = []
        if "current" in body:
            current = _typed(body["current"], dict, "current")
            found.append(self._observation(location, "current", current, offset, "current"))
        if "hourly" in body:
            hourly = _typed(body["hourly"], dict, "hourly")
            times = _typed(hourly.get("time"), list, "hourly.time")
            for i in range(len(times)):
                row = {"time": times[i]} | {v: _at(hourly, v, i) for v in VARIABLES if v in hourly}
                observation = self._observation(location, "hourly", row, offset, f"hourly[{i}]")
                if observation.observed_time <= self.now():  # later hours are forecasts
                    found.append(observation)
        if not found and "current" not in body:
            raise ValidationError("current", "is required", Reason.MISSING_FIELD)
        return found

    def _observation(self, location: Location, kind: str, row: dict, offset: timedelta, path: str) -> WeatherObservation:
        local = _typed(row.get("time"), str, f"{path}.time")
        try:
            observed = datetime.fromisoformat(local).replace(tzinfo=timezone(offset))
        except ValueError:
            raise ValidationError(f"{path}.time", f"{local!r} is not an ISO-8601 time", Reason.BAD_TIMESTAMP) from None
        values = {field: row.get(variable) for variable, field in VARIABLES.items()}
        return WeatherObservation.from_dict({
            "location_id": location.id, "latitude": location.latitude, "longitude": location.longitude,
            "observed_time": observed.astimezone(timezone.utc).isoformat(), "kind": kind, **values,
        }, path + ".")


def _typed(value: Any, kind: type, field: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValidationError(field, f"expected {kind.__name__}, got {type(value).__name__}", Reason.WRONG_TYPE)
    return value


def _at(hourly: dict, variable: str, i: int) -> Any:
    values = _typed(hourly[variable], list, f"hourly.{variable}")
    if i >= len(values):
        raise ValidationError(f"hourly.{variable}", "is shorter than hourly.time", Reason.BAD_VALUE)
    return values[i]
