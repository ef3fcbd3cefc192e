"""aliasd: an authoritative DNS server that flattens ALIAS records.

The package is split by stage, each a subpackage that imports only from the
ones before it in this list:

- ``base``: configuration, the packed record store, counters, state files;
- ``zones``: master files (with ALIAS), zone versions, the registry, catalog;
- ``resolve``: ALIAS targets to addresses, upstreams, damping;
- ``dnssec``: keys, the signer, RRSIGs;
- ``replicate``: AXFR/IXFR, the journal, serial numbering, NOTIFY;
- ``update``: RFC 2136 dynamic updates and dynamic zones;
- ``answer``: queries in, answers out;
- ``listen``: UDP, TCP and TLS sockets, rate limiting;
- ``service``: the authority, the ``twistd aliasd`` plugin's service
  assembly, reload and ``aliasd-check``.
"""

__version__ = "0.1.0"
