"""The ``twistd aliasd`` plugin: a ServiceMaker naming ``aliasd.tap``."""

from twisted.application.service import ServiceMaker

aliasd = ServiceMaker(
    "aliasd",
    "aliasd.tap",
    "Authoritative DNS server that flattens ALIAS records",
    "aliasd",
)
