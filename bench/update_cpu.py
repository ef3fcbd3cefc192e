#!/usr/bin/env python3
"""CPU per UPDATE in process: the query handler, the authority and a real
state store on a test clock, no sockets, no clients.

Why beside update_perf.py: on the shared 2-core machine a real run's
updates/s and even its CPU per update move with the load, and the clients
take as much CPU as the server. Here one process does only the server's
work for each UPDATE (parse and TSIG check, the update applied, the commit's
build, difference and LMDB write, the version served, the signed reply),
``--per-commit`` UPDATEs per commit, as update_perf.py's 8 clients give
about 3.5. Run two code trees alternately (``PYTHONPATH=TREE``) and
compare the minimum of several runs; ``--profile FILE`` writes a cProfile
of the measured part.

    PYTHONPATH=. .venv/bin/python bench/update_cpu.py [--records 0] [--updates 3000]
        [--per-commit 3] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.name  # noqa: E402
import dns.tsig  # noqa: E402
import dns.update  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

import aliasd  # noqa: E402
from aliasd.answer.answers import QueryHandler  # noqa: E402
from aliasd.base.config import UpdateRule  # noqa: E402
from aliasd.base.state import StateStore  # noqa: E402
from aliasd.replicate import journaldb  # noqa: E402
from aliasd.service.authority import ZoneAuthority  # noqa: E402
from aliasd.update.dynamic import DynamicZones  # noqa: E402
from aliasd.zones.zonefile import load_zone_file  # noqa: E402

ORIGIN = dns.name.from_text("example.test.")
KEY = dns.tsig.Key("ops", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", dns.tsig.HMAC_SHA256)
WARM_UP = 200


class _Zone:
    name = ORIGIN
    dynamic = True

    def __init__(self, file: Path):
        self.file = file


def served(directory: Path, records: int):
    """(handler, authority, clock): example.test. with ``records`` extra A
    records, a dynamic zone on a state store, updates by key ``ops``."""
    text = "$ORIGIN example.test.\n@ 300 SOA ns1 hostmaster 10 3600 600 86400 300\n@ 300 NS ns1\n"
    text += "ns1 300 A 192.0.2.1\n"
    text += "".join(f"h{i} 300 A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(records))
    path = directory / "example.test.zone"
    path.write_text(text)
    state = StateStore(directory / "state")
    files = journaldb.JournalStore(state.db)
    dynamic = DynamicZones(files, [_Zone(path)])
    truth = dynamic.start_source(load_zone_file("example.test", path), hashlib.sha256(path.read_bytes()).digest())
    clock = task.Clock()
    authority = ZoneAuthority(state=state, clock=clock, run_in_thread=defer.maybeDeferred, journal_files=files,
                              snapshot_frames=dynamic.snapshot_frames)
    authority.set_sources([truth], wait=True)
    handler = QueryHandler(authority, keyring={KEY.name: KEY}, update_rules={ORIGIN: [UpdateRule("ops")]})
    return handler, authority, clock


def updates(count: int) -> list[bytes]:
    """Signed UPDATEs as an ACME client sends them: add a challenge TXT, then delete it."""
    wires = []
    for i in range(count):
        message = dns.update.UpdateMessage("example.test", keyring=KEY, keyname=KEY.name,
                                           keyalgorithm=KEY.algorithm)
        name, token = f"_acme-challenge.c{i // 2}.example.test.", f'"token-{i // 2}"'
        if i % 2:
            message.delete(name, "TXT", token)
        else:
            message.add(name, 60, "TXT", token)
        wires.append(message.to_wire())
    return wires


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=0, help="extra A records in the zone")
    parser.add_argument("--updates", type=int, default=3000, help="UPDATEs measured (after a warm-up)")
    parser.add_argument("--per-commit", type=int, default=3, help="UPDATEs handled before each commit")
    parser.add_argument("--profile", default=None, help="write a cProfile of the measured part here")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="aliasd-update-cpu-"))
    try:
        handler, authority, clock = served(directory, args.records)
        wires = updates(WARM_UP + args.updates)
        answers: list[bytes] = []

        def run(batch: list[bytes]) -> None:
            for i in range(0, len(batch), args.per_commit):
                for wire in batch[i:i + args.per_commit]:
                    result = handler.handle(wire, "127.0.0.1#53000", over_udp=False)
                    if isinstance(result, defer.Deferred):
                        result.addCallback(answers.append)
                    else:
                        answers.append(result)
                for _ in range(4):  # built, recorded, served, answered
                    clock.advance(0)

        run(wires[:WARM_UP])
        profile = cProfile.Profile() if args.profile else None
        started = time.process_time()
        if profile is not None:
            profile.enable()
        run(wires[WARM_UP:])
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        cpu = time.process_time() - started
        failed = sum(1 for wire in answers if wire[3] & 0xF)
        if len(answers) != len(wires) or failed:
            print(f"{len(answers)} answers to {len(wires)} UPDATEs, {failed} not NOERROR", file=sys.stderr)
            return 1
        print(f"{aliasd.__file__}: {args.records} records, {args.per_commit} per commit: "
              f"{cpu * 1e6 / args.updates:.0f} us CPU per UPDATE (serial {authority.versions[ORIGIN].serial})")
        return 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
