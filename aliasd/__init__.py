"""aliasd: an authoritative DNS server that flattens ALIAS records.

The package is split by responsibility: ``config`` (settings), ``zonefile``
(master files and the ALIAS type), ``zone`` (immutable zone versions and the
answer algorithm), ``resolution`` (ALIAS targets to addresses), ``authority``
(the set of served zones), ``server`` (DNS over UDP/TCP) and ``tap`` (the
``twistd aliasd`` plugin's options and service assembly).
"""

__version__ = "0.1.0"
