"""``aliasd-check``: validate a configuration and its zones, like named-checkconf.

    aliasd-check [--config FILE] [--zone NAME=FILE ...]

Exit 0 with one summary line per zone when everything can be served; exit 1
with one ``file:line: reason`` line per problem otherwise (every zone is
checked, not just up to the first error). ALIAS loops are reported as
warnings: the server would answer SERVFAIL for those owners and serve the
rest. Nothing is started and no state is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, TextIO

from aliasd.authority import ZoneAuthority
from aliasd.config import ConfigError, Settings, ZoneSettings, load_settings, parse_zone_name
from aliasd.zonefile import ZoneFileError, load_zone_file


def _zone_arg(spec: str) -> ZoneSettings:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {spec!r}")
    try:
        return ZoneSettings(parse_zone_name(name), Path(path).resolve())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check(config: str | None, extra_zones: Sequence[ZoneSettings], out: TextIO) -> int:
    """Check everything; write the report to ``out``; return the exit status."""
    try:
        settings = load_settings(config) if config else Settings()
    except ConfigError as e:
        print(e, file=out)
        return 1
    zones = {z.name: z for z in settings.zones}
    zones.update({z.name: z for z in extra_zones})
    if not zones:
        print(f"{config or 'aliasd'}: no zones configured", file=out)
        return 1
    sources, errors = [], 0
    for zone in zones.values():
        try:
            sources.append(load_zone_file(zone.name, zone.file))
        except ZoneFileError as e:
            print(e, file=out)
            errors += 1
    if errors:
        return 1
    authority = ZoneAuthority()  # follows in-zone ALIAS chains, finds loops
    authority.set_sources(sources)
    for source in sources:
        version = authority.versions[source.origin]
        loops = sorted(o.to_text() for o in source.aliases if version.lookup(o, 1).rcode == 2)
        print(
            f"{source.origin}: serial {source.serial}, {source.record_count()}"
            f" records, {len(source.aliases)} ALIAS ({source.path})",
            file=out,
        )
        if loops:
            print(f"{source.path}: warning: ALIAS loop, SERVFAIL for {', '.join(loops)}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aliasd-check", description="Validate an aliasd configuration and its zone files."
    )
    parser.add_argument("--config", "-c", help="configuration file (TOML)")
    parser.add_argument("--zone", action="append", default=[], type=_zone_arg, metavar="NAME=FILE",
                        help="a zone to check as well (repeatable)")
    args = parser.parse_args(argv)
    return check(args.config, args.zone, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
