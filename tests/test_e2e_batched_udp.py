"""End to end: UDP read with recvmmsg and answered with sendmmsg
(aliasd.listen.mmsg) by the main process (``workers = 1``) and by workers.

Many clients at once, over IPv4 and IPv6 (the server listens on both, and
a worker reads both sockets through one set of buffers): every answer goes
to the socket that asked, with its ID and question, first from the full
path, then from the answers kept by query octets; NXDOMAIN too. The
statistics count every answer exactly once, summed over the workers.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import pytest

from tests.aliasd_process import free_port
from tests.test_e2e_statistics import scrape
from tests.test_e2e_workers import Pool, send_at_once

pytestmark = pytest.mark.e2e

HOSTS = 8
ZONE = "\n".join(["$ORIGIN example.com.", "$TTL 300", "@ SOA ns1 hostmaster 1 3600 600 86400 60", "@ NS ns1",
                  "ns1 A 192.0.2.53", *(f"h{i} A 192.0.2.{i + 1}" for i in range(HOSTS))]) + "\n"
CLIENTS = 90  # each from its own port: several batches' worth at once
ROUNDS = 3  # the full path, then kept answers


def udp_answers(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("aliasd_queries_total{") and 'transport="udp"' in k)


@pytest.mark.parametrize("workers", [1, 2])
def test_each_client_gets_its_own_answer_over_ipv4_and_ipv6_counted_once(aliasd, workers):
    metrics = free_port()
    p = aliasd(f'[statistics]\nlisten = "127.0.0.1:{metrics}"\n[zones."example.com"]\nfile = "example.com.zone"\n',
               {"example.com.zone": ZONE}, server=f"workers = {workers}\n")
    if workers > 1:
        Pool(p, metrics, workers)  # (until the workers answer)
    names = [f"h{i}.example.com" for i in range(HOSTS)] + ["nx.example.com"]
    asked = [(i, names[i % len(names)]) for i in range(CLIENTS)]
    wires = [dns.message.make_query(name, "A", id=1000 + i).to_wire() for i, name in asked]
    before = udp_answers(scrape(metrics))
    for host in ("127.0.0.1", "::1"):
        for _ in range(ROUNDS):
            answers = send_at_once(p.port, wires, host=host)
            assert None not in answers, host
            for (i, name), wire in zip(asked, answers):
                answer = dns.message.from_wire(wire)
                assert (answer.id, answer.question[0].name) == (1000 + i, dns.name.from_text(name))
                if name.startswith("nx."):
                    assert answer.rcode() == dns.rcode.NXDOMAIN and not answer.answer
                else:
                    assert answer.answer[0][0].address == f"192.0.2.{int(name[1:name.index('.')]) + 1}"
    assert udp_answers(scrape(metrics)) - before == 2 * ROUNDS * CLIENTS
