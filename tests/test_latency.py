"""measure.Latency as notebooks print it (the timing itself is tested in test_measure_results)."""

import pytest

from helpers import measure


def test_band_is_the_p10_p90_text_at_the_digits_asked():
    lat = measure.summarize([10.0, 11.0, 12.0, 13.0, 20.0], threads=2)
    assert (lat.p10_ms, lat.p90_ms) == pytest.approx((10.4, 17.2))
    assert lat.band() == "10.4-17.2"
    assert lat.band(2) == "10.40-17.20" and lat.band(0) == "10-17"
    assert str(lat) == "12.00 ms (p10-p90 10.40-17.20, 5 runs, 2 threads)"
