"""``aliasd-check``: validate a configuration and its zones, like named-checkconf.

    aliasd-check [--config FILE] [--zone NAME=FILE ...]
    aliasd-check [--config FILE] --ds ZONE

Exit status, so that the init script can tell a broken zone (which the
server survives) from a broken configuration (which stops it):

- 0: everything can be served; one summary line per zone.
- 1: the configuration is good, but zone files are broken: one
  ``file:line: reason`` line per problem (every zone is checked, not just
  up to the first error). The server starts and reloads anyway; those
  zones serve their last good data from the store, or SERVFAIL.
- 2: the configuration file itself cannot be used (TOML error, a bad key,
  no zones and no [api]): one line; the server would refuse to start or reload.

ALIAS loops are reported as warnings: those owners would serve no
addresses (NODATA, as on the secondaries) and the rest is served. Nothing
is started and no state is written.

``--ds ZONE`` prints the DS records of a signed zone's key-signing keys
(from the state directory's ``keys``), to give to the parent zone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, TextIO

import dns.exception
import dns.name

from aliasd.base import store
from aliasd.base.config import (
    ConfigError,
    Settings,
    ZoneSettings,
    load_settings,
    parse_zone_arg,
    with_command_line_zones,
)
from aliasd.dnssec.keys import KeyFileError, KeyStore, ds_rrset
from aliasd.service.authority import ZoneAuthority
from aliasd.zones.zonefile import ZoneFileError, load_zone_file

#: Exit status: zone files are broken (the server serves the rest).
BROKEN_ZONES = 1
#: Exit status: the configuration cannot be used (the server refuses it).
BAD_CONFIGURATION = 2


def _zone_arg(spec: str) -> ZoneSettings:
    try:
        return parse_zone_arg(spec)
    except ValueError as e:  # argparse shows the message of this one only
        raise argparse.ArgumentTypeError(str(e)) from None


def check(config: str | None, extra_zones: Sequence[ZoneSettings], out: TextIO) -> int:
    """Check everything; write the report to ``out``; return the exit status."""
    try:
        settings = load_settings(config) if config else Settings()
    except ConfigError as e:
        print(e, file=out)
        return BAD_CONFIGURATION
    zones = {z.name: z for z in with_command_line_zones(settings, extra_zones)}
    if not zones and not settings.api.enabled:  # with [api], zones may come at runtime (as in tap)
        print(f"{config or 'aliasd'}: no zones configured", file=out)
        return BAD_CONFIGURATION
    sources, errors = [], 0
    for zone in zones.values():
        try:
            sources.append(load_zone_file(zone.name, zone.file, include_anywhere=zone.include_anywhere,
                                          signed=zone.dnssec))
        except ZoneFileError as e:
            print(e, file=out)
            errors += 1
    if errors:
        return BROKEN_ZONES
    authority = ZoneAuthority()  # follows in-zone ALIAS chains, finds loops
    authority.set_sources(sources)
    for source in sources:
        version = authority.versions[source.origin]
        loops = sorted(o.to_text() for o in source.aliases if store.key_of(o) in version.loop_keys)
        print(
            f"{source.origin}: serial {source.serial}, {source.record_count()}"
            f" records, {len(source.aliases)} ALIAS ({source.path})",
            file=out,
        )
        if loops:
            print(f"{source.path}: warning: ALIAS loop, no addresses for {', '.join(loops)}", file=out)
    return 0


def print_ds(config: str | None, zone_text: str, out: TextIO) -> int:
    """Print the DS records (SHA-256) of ``zone_text``'s KSKs; 1 if it has none."""
    try:
        settings = load_settings(config) if config else Settings()
        zone = dns.name.from_text(zone_text)
    except (ConfigError, dns.exception.DNSException) as e:
        print(e, file=out)
        return 1
    try:
        keys = KeyStore(settings.server.state_dir / "keys").load(zone)
    except (KeyFileError, OSError) as e:
        print(e, file=out)
        return 1
    ds = ds_rrset(zone, keys, 3600) if keys else None
    if ds is None or not len(ds):
        print(f"{zone}: no key-signing keys in {settings.server.state_dir / 'keys'} "
              "(aliasd makes them when it first signs the zone)", file=out)
        return 1
    print(ds.to_text(), file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aliasd-check", description="Validate an aliasd configuration and its zone files."
    )
    parser.add_argument("--config", "-c", help="configuration file (TOML)")
    parser.add_argument("--zone", action="append", default=[], type=_zone_arg, metavar="NAME=FILE",
                        help="a zone to check as well (repeatable)")
    parser.add_argument("--ds", metavar="ZONE", help="print the DS records of a signed zone for its parent")
    args = parser.parse_args(argv)
    if args.ds:
        return print_ds(args.config, args.ds, sys.stdout)
    return check(args.config, args.zone, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
