"""The vendored TradingView Lightweight Charts library (assets/vendor, from npm, Apache-2.0):
read from the package so the dashboard serves it and reports inline it, never from a CDN."""

from __future__ import annotations

from functools import cache
from importlib import resources

VERSION = "5.2.1"
SCRIPT_NAME = "lightweight-charts.standalone.production.js"
LICENSE_NAME = "LICENSE.lightweight-charts"
NOTICE_NAME = "NOTICE.lightweight-charts"


def _vendor_text(name: str) -> str:
    return resources.files("engine.analysis").joinpath("assets", "vendor", name).read_text(encoding="utf-8")


@cache
def script() -> str:
    """The library's standalone build (it defines the global ``LightweightCharts``)."""
    return _vendor_text(SCRIPT_NAME)


def notice() -> str:
    """The attribution that goes with every copy of the library papertape hands out."""
    return _vendor_text(NOTICE_NAME)


def inline_script() -> str:
    """The library as an inline ``<script>`` element for a self-contained HTML file."""
    body = script().replace("</script", "<\\/script")
    return f"<script>\n{body}\n</script>"
