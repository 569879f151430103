"""Geodesy for field visits: distances on WGS-84 and the GCJ-02 offset.

GPS receivers report WGS-84. Maps published in mainland China (AMap/高德,
Tencent/腾讯, and their SDKs) report GCJ-02 (火星坐标), an obfuscated datum that
shifts points by up to several hundred metres; Baidu adds its own BD-09 offset
on top (not handled here). Fixes and sites must be in one datum before any
distance is measured, so GCJ-02 input is converted to WGS-84 first.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius; haversine error stays below 0.5%

# Constants of the published GCJ-02 transform: the Krasovsky 1940 ellipsoid.
_KRASOVSKY_A = 6_378_245.0
_KRASOVSKY_EE = 0.00669342162296594323
_INVERSE_TOLERANCE_DEG = 1e-10  # about 0.01 mm
_INVERSE_MAX_STEPS = 30


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance in metres between two WGS-84 points."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    h = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * (
        math.sin(half_dlambda) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def is_outside_china(lat: float, lon: float) -> bool:
    """Tell whether GCJ-02 leaves the point unshifted (the transform's own box)."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """Return the GCJ-02 ``(lat, lon)`` a Chinese map shows for a WGS-84 point."""
    if is_outside_china(lat, lon):
        return lat, lon
    x, y = lon - 105.0, lat - 35.0
    dlat = _shift_lat(x, y)
    dlon = _shift_lon(x, y)

    radlat = math.radians(lat)
    magic = 1 - _KRASOVSKY_EE * math.sin(radlat) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / (
        (_KRASOVSKY_A * (1 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * math.pi
    )
    dlon = (dlon * 180.0) / (_KRASOVSKY_A / sqrt_magic * math.cos(radlat) * math.pi)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """Return the WGS-84 ``(lat, lon)`` of a GCJ-02 point.

    The transform has no closed-form inverse; a fixed-point iteration on the
    forward transform converges to well under a millimetre in a few steps
    (the common one-step approximation is off by one to two metres).
    """
    if is_outside_china(lat, lon):
        return lat, lon
    guess_lat, guess_lon = lat, lon
    for _ in range(_INVERSE_MAX_STEPS):
        shown_lat, shown_lon = wgs84_to_gcj02(guess_lat, guess_lon)
        error_lat, error_lon = shown_lat - lat, shown_lon - lon
        guess_lat, guess_lon = guess_lat - error_lat, guess_lon - error_lon
        if max(abs(error_lat), abs(error_lon)) < _INVERSE_TOLERANCE_DEG:
            break
    return guess_lat, guess_lon


def _shift_lat(x: float, y: float) -> float:
    shift = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y
    shift += 0.2 * math.sqrt(abs(x))
    shift += (
        (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi))
        * 2
        / 3
    )
    shift += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2 / 3
    shift += (
        (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y / 30.0 * math.pi))
        * 2
        / 3
    )
    return shift


def _shift_lon(x: float, y: float) -> float:
    shift = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y
    shift += 0.1 * math.sqrt(abs(x))
    shift += (
        (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi))
        * 2
        / 3
    )
    shift += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2 / 3
    shift += (
        (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi))
        * 2
        / 3
    )
    return shift


__all__ = [
    "EARTH_RADIUS_M",
    "gcj02_to_wgs84",
    "haversine_m",
    "is_outside_china",
    "wgs84_to_gcj02",
]
