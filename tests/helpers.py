"""Helpers for unit tests: zone sources from text."""

from __future__ import annotations

import textwrap
from pathlib import Path
import tempfile

from aliasd.zonefile import ZoneSource, load_zone_file


def zone_source(origin: str, text: str) -> ZoneSource:
    """Parse zone text through the real loader (via a temporary file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zone"
        path.write_text(textwrap.dedent(text))
        return load_zone_file(origin, path)
