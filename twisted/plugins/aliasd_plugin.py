"""The ``twistd aliasd`` plugin: a ServiceMaker naming ``aliasd.service.tap``."""

from twisted.application.service import ServiceMaker

aliasd = ServiceMaker(
    "aliasd",
    "aliasd.service.tap",
    "Authoritative DNS server that flattens ALIAS records",
    "aliasd",
)
