"""Market bars from Yahoo Finance through yfinance: intraday while the market is open, daily otherwise.

Each poll asks yfinance for the bars of every symbol (``Ticker.history``); which bars depends on
whether the exchange's regular session is open now, as the last answer's ``currentTradingPeriod``
says (the first poll asks for daily bars, and adds intraday ones when the session is open). A bar
equal to the one last sent for the same symbol, interval and time is not sent again; the bar still
forming is re-sent as it changes.

yfinance talks to Yahoo through its own session (curl_cffi when installed). With ``yahoo_url`` set,
it gets a :class:`YahooRedirectSession` instead: a ``requests.Session`` (a session type yfinance
accepts) that sends every request for a ``*.yahoo.com`` URL to that base URL, keeping path and query.
That is how tests point yfinance at a stand-in on 127.0.0.1, and how a deployment can use a proxy.
yfinance's session is process-wide (a singleton), so one process talks to one Yahoo. Every request
gets ``fetch_timeout_seconds`` in total: this session enforces it as a deadline for the whole answer;
curl_cffi's timeout already is one.

>>> YahooRedirectSession("http://127.0.0.1:8000").rewrite("https://query2.finance.yahoo.com/v8/finance/chart/X?range=1d")
'http://127.0.0.1:8000/v8/finance/chart/X?range=1d'
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from moodshift.connectors.live import ChangeFilter, DeadlineSession, SourceError
from moodshift.connectors.producer import EventProducer
from moodshift.connectors.record import Rejected, utc_now
from moodshift.connectors.schemas import MarketTick
from moodshift.connectors.topics import MARKET
from moodshift.connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

DAILY = "1d"


class YahooRedirectSession(DeadlineSession):
    """A ``requests.Session`` that sends requests for Yahoo hosts to ``base_url`` instead, each answered
    in full within its timeout (:class:`connectors.live.DeadlineSession`)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "yahoo.com" and not host.endswith(".yahoo.com"):
            return url
        return self.base_url + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return super().request(method, self.rewrite(url), *args, **kwargs)


class YahooMarketSource:
    """Polls yfinance for ``market_symbols`` and sends new :class:`MarketTick` s keyed by symbol.

    >>> from moodshift.connectors.producer import RecordingClient
    >>> settings = ConnectorSettings(market_symbols="^GSPC, AAPL")
    >>> YahooMarketSource(settings, EventProducer(settings, "yahoo", client=RecordingClient())).symbols
    ('^GSPC', 'AAPL')
    """

    name = "yahoo"

    def __init__(self, settings: ConnectorSettings, producer: EventProducer, now: Callable[[], datetime] = utc_now) -> None:
        import yfinance

        self.yf = yfinance
        self.settings = settings
        self.producer = producer
        self.symbols = tuple(s.strip() for s in settings.market_symbols.split(",") if s.strip())
        if not self.symbols:
            raise ValueError("market_symbols: no symbol configured")
        self.session = YahooRedirectSession(settings.yahoo_url) if settings.yahoo_url else None
        self.changes = ChangeFilter()
        self.market_open: dict[str, bool] = {}
        self.now = now
        # Failures must reach us as exceptions (yfinance's default logs them and returns no rows).
        yfinance.config.debug.hide_exceptions = False

    def poll(self) -> int:
        sent = 0
        for symbol in self.symbols:
            intraday = self.market_open.get(symbol, False)
            sent += self._send_bars(symbol, self.settings.market_intraday_interval if intraday else DAILY)
            if self.market_open[symbol] and not intraday:  # it opened since the last poll
                sent += self._send_bars(symbol, self.settings.market_intraday_interval)
        return sent

    def _send_bars(self, symbol: str, interval: str) -> int:
        ticks, self.market_open[symbol] = self.fetch(symbol, interval)
        sent = 0
        for tick in ticks:
            if self.changes.changed((symbol, interval, tick.observed_time), (tick.open, tick.high, tick.low,
                                                                              tick.close, tick.volume)):
                sent += self.producer.send_event(MARKET, tick)
        return sent

    def fetch(self, symbol: str, interval: str) -> tuple[list[MarketTick], bool]:
        """The bars of ``symbol`` at ``interval`` (today's for intraday, the last 5 days' for daily) and
        whether the regular session is open now."""
        ticker = self.yf.Ticker(symbol, session=self.session)
        try:
            frame = ticker.history(period="1d" if interval != DAILY else "5d", interval=interval, auto_adjust=False,
                                   actions=False, repair=False, prepost=False, timeout=self.settings.fetch_timeout_seconds)
            metadata = ticker.history_metadata
        except self.yf.exceptions.YFRateLimitError:
            raise SourceError("rate_limited", f"Yahoo rate-limited {symbol}") from None
        except Exception as error:  # yfinance raises many types (HTTP, JSON, pandas): all are a failed poll
            raise SourceError("yahoo_error", f"{symbol} {interval}: {type(error).__name__}: {error}") from None
        ticks = []
        for stamp, row in frame.iterrows():
            values = [row.get(c) for c in ("Open", "High", "Low", "Close", "Volume")]
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
                continue  # Yahoo leaves gaps as nulls in bars without trades
            try:
                ticks.append(MarketTick(
                    symbol=symbol, observed_time=stamp.to_pydatetime().astimezone(timezone.utc), open=float(values[0]),
                    high=float(values[1]), low=float(values[2]), close=float(values[3]), volume=int(values[4]),
                    interval=interval,
                ))
            except Rejected as error:  # an inconsistent bar: keep it, with why, and go on
                self.producer.send_dead_letter(
                    repr({"symbol": symbol, "time": str(stamp), "values": values}).encode(), topic=MARKET,
                    reason=error.reason, message=str(error), key=symbol, source=self.name,
                )
        return ticks, self._session_open(metadata)

    def _session_open(self, metadata: dict[str, Any]) -> bool:
        regular = (metadata or {}).get("currentTradingPeriod", {}).get("regular", {})
        start, end = regular.get("start"), regular.get("end")
        if start is None or end is None:
            return False
        return start.to_pydatetime() <= self.now() < end.to_pydatetime()
