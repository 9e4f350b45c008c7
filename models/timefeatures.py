"""When a step happened, as features: cyclic time of day and week, and the gap since the last step.

>>> f = time_features(1_500_000_000.0, None)
>>> f.shape, float(f[5])
((6,), 1.0)
>>> g = time_features(1_500_003_600.0, 1_500_000_000.0)
>>> bool(g[4] > 0), float(g[5])
(True, 0.0)
"""

from __future__ import annotations

import math

import numpy as np

#: sin/cos hour of day, sin/cos day of week, scaled log gap, first-step flag.
TIME_DIM = 6

_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S
# log1p(30 days in seconds): gaps of a month or more map to about 1, keeping the feature in [0, ~1].
_GAP_SCALE = math.log1p(30 * _DAY_S)


def time_features(event_time_s: float, prev_event_time_s: float | None) -> np.ndarray:
    """Features of a step at ``event_time_s`` (Unix seconds, UTC); ``prev`` is None on a first step."""
    day_angle = 2 * math.pi * (event_time_s % _DAY_S) / _DAY_S
    # The Unix epoch was a Thursday; shift so the week angle starts on Monday 00:00 UTC.
    week_angle = 2 * math.pi * ((event_time_s + 3 * _DAY_S) % _WEEK_S) / _WEEK_S
    if prev_event_time_s is None:
        gap, first = 0.0, 1.0
    else:
        gap, first = math.log1p(max(event_time_s - prev_event_time_s, 0.0)) / _GAP_SCALE, 0.0
    return np.array(
        [math.sin(day_angle), math.cos(day_angle), math.sin(week_angle), math.cos(week_angle), gap, first],
        dtype=np.float32,
    )
