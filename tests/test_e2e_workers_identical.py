"""End to end: answers are the same whichever worker gives them, byte for byte apart from the ID.

The zone covers the shapes of the directanswer oracle test
(tests/test_directanswer.py): NOERROR, NXDOMAIN, NODATA, wildcards, CNAME
chains through a wildcard, a delegation (referral), DNAME, ALIAS A and
AAAA, an ALIAS whose target does not exist, and a TXT RRset too large for
512 octets (TC without EDNS). Every question of the oracle is asked with
and without EDNS and with DO, many times at once from fresh ports, of a
server with ``workers = 2`` and of one with ``workers = 1`` on the same
zone; a signed copy of the zone is asked with DO of the two workers only
(each server signs with its own keys).
"""

from __future__ import annotations

import random
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.aliasd_process import free_port
from tests.test_directanswer import CUT, DNAME, QUESTIONS, TEXT, WILD
from tests.test_e2e_statistics import scrape
from tests.test_e2e_workers import Pool, moved, send_at_once

pytestmark = pytest.mark.e2e

BIG = "".join(f'big TXT "{i:02d} {"t" * 200}"\n' for i in range(4))
SHAPES = (WILD + CUT[len(TEXT):] + DNAME[len(TEXT):] + BIG).replace("lb.example.net.", "lb.upstream.test.").replace("gone.example.net.", "gone.upstream.test.")
SIGNED = SHAPES.replace("$ORIGIN Example.com.", "$ORIGIN Signed.test.").replace("example.com.", "signed.test.")
COPIES = 12
VARIANTS = {"no EDNS": {"use_edns": False}, "EDNS": {"use_edns": 0, "payload": 1232},
            "DO": {"use_edns": 0, "payload": 1232, "want_dnssec": True}}


def config(upstream, metrics_port: int, signed: bool) -> str:
    text = (f'[statistics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            f'[resolver]\nupstreams = ["{upstream.endpoint}"]\nmin-refresh = 60\n'
            '[zones."example.com"]\nfile = "example.com.zone"\n')
    if signed:
        text += '[zones."signed.test"]\nfile = "signed.test.zone"\ndnssec = true\n'
    return text


def wires(origin: str) -> dict[tuple, bytes]:
    """Every oracle question (its name moved to ``origin``, in mixed case) in every variant."""
    rng = random.Random(24)
    made = {}
    questions = [*QUESTIONS, ("big.example.com.", "TXT")]
    for variant, args in VARIANTS.items():
        for i, (name, qtype) in enumerate(questions):
            name = name.replace("example.com.", origin)
            mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
            query = dns.message.make_query(mixed, qtype, id=i, **args)
            query.flags = 0  # no RD, as a resolver asks an authority
            made[name, qtype, variant] = query.to_wire()
    return made


def ask(port: int, questions: dict[tuple, bytes]) -> dict[tuple, set[bytes]]:
    """Each question COPIES times at once: the distinct answers, ID cut off."""
    got = {}
    for key, wire in questions.items():
        answers = send_at_once(port, [wire] * COPIES)
        assert None not in answers, key
        got[key] = {a[2:] for a in answers}
    return got


def ready(p, origin: str) -> int:
    """The serial once the apex ALIAS is resolved and the absent target known."""
    p.wait_for(lambda: p.addresses(origin) == {"198.51.100.7", "198.51.100.8"})
    time.sleep(1)  # gone.upstream.test answered NXDOMAIN too
    return p.query(origin, "SOA").answer[0][0].serial


def test_every_worker_answers_every_shape_as_one_process_does(aliasd, upstream, tmp_path):
    upstream.set("lb.upstream.test", "A", ["198.51.100.7", "198.51.100.8"], ttl=60)
    upstream.set("lb.upstream.test", "AAAA", ["2001:db8::7"], ttl=60)
    zones = {"example.com.zone": SHAPES, "signed.test.zone": SIGNED}
    metrics = free_port()
    single = aliasd(config(upstream, free_port(), signed=False), zones, server="workers = 1\n",
                    args=["--state-dir", str(tmp_path / "state1")])
    pool = Pool(aliasd(config(upstream, metrics, signed=True), zones, server="workers = 2\n",
                       args=["--state-dir", str(tmp_path / "state2")]), metrics)
    serial = ready(single, "example.com.")
    assert ready(pool.p, "example.com.") == serial
    pool.p.wait_for(lambda: pool.p.query("signed.test", "DNSKEY").answer)

    before = pool.per_worker(pool.settled())
    plain = wires("example.com.")
    one, two = ask(single.port, plain), ask(pool.p.port, plain)
    signed = ask(pool.p.port, {k: w for k, w in wires("signed.test.").items() if k[2] == "DO"})
    each = moved(before, pool.per_worker(pool.settled()))
    print(f"{len(plain) + len(signed)} questions x {COPIES}: answers per worker {each}")
    assert len(each) == 2 and all(n > 0 for n in each.values()), each

    # (key, distinct answers of the two workers, the same as one process's)
    differ = [(k, len(two[k]), two[k] == one[k]) for k in plain if len(two[k]) != 1 or two[k] != one[k]]
    assert not differ, differ
    assert all(len(answers) == 1 for answers in one.values())  # one process: the same answer each time
    assert not [k for k, answers in signed.items() if len(answers) != 1]
    # The shapes are there: truncation without EDNS, RRSIGs with DO, a referral.
    parsed = {k: dns.message.from_wire(b"\0\0" + next(iter(v))) for k, v in two.items()}
    assert parsed["big.example.com.", "TXT", "no EDNS"].flags & dns.flags.TC
    assert not parsed["big.example.com.", "TXT", "EDNS"].flags & dns.flags.TC
    assert parsed["x.sub.example.com.", "A", "EDNS"].authority[0].rdtype == dns.rdatatype.NS
    assert parsed["nx.example.com.", "A", "EDNS"].rcode() == dns.rcode.NXDOMAIN
    assert parsed["example.com.", "AAAA", "no EDNS"].answer[0][0].address == "2001:db8::7"  # ALIAS AAAA
    assert {r.rdtype for r in dns.message.from_wire(b"\0\0" + next(iter(signed["www.signed.test.", "A", "DO"]))).answer} \
        == {dns.rdatatype.A, dns.rdatatype.RRSIG}
    assert scrape(metrics)["aliasd_workers"] == 2
