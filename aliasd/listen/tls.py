"""TLS for DNS over TLS (RFC 7858) and zone transfers over TLS (RFC 9103).

The listener offers TLS 1.2 and 1.3 with the ALPN token "dot" (RFC 9103
7.1); transfers additionally require TLS 1.3 (RFC 9103 5.1), checked per
request by the transfer access rules. With a client CA configured, only
clients whose certificate that CA issued complete the handshake (mutual
TLS). Certificate, key and CA are read again on reload, so a renewed
certificate is used without a restart; a broken file keeps the old context.

pyOpenSSL and cryptography (about 50 ms of imports) are imported with this
module, which is imported only when TLS is configured.
"""

from __future__ import annotations

from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from aliasd.base.config import ConfigError, TLSSettings

log = Logger()

#: RFC 9103 7.1 and RFC 7858: the ALPN protocol of DNS over TLS.
ALPN_DOT = b"dot"


def _certificates(path: Path, what: str, where: str) -> list[crypto.X509]:
    """Every PEM certificate in ``path`` (a certificate and its chain);
    ``what`` names the key with its section ("[tls] certificate")."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: {what}: cannot read {path}: {e.strerror}") from None
    blocks = []
    marker = b"-----END CERTIFICATE-----"
    for chunk in data.split(marker)[:-1]:
        try:
            blocks.append(crypto.load_certificate(crypto.FILETYPE_PEM, chunk + marker))
        except crypto.Error as e:
            raise ConfigError(f"{where}: {what}: {path}: not a PEM certificate ({e})") from None
    if not blocks:
        raise ConfigError(f"{where}: {what}: {path}: no PEM certificate in the file")
    return blocks


def certificate_options(settings: TLSSettings, where: str = "", keys: str = "[tls] ",
                        protocols: tuple[bytes, ...] = (ALPN_DOT,)) -> ssl.CertificateOptions:
    """The server-side TLS options for ``settings``; ConfigError names the
    configuration file (``where``), the key (``keys``: its section and
    prefix, "[api] tls-" for the HTTP API's) and the problem. ``protocols``:
    the ALPN tokens offered."""
    chain = _certificates(settings.certificate, f"{keys}certificate", where)
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, settings.key.read_bytes())
    except OSError as e:
        raise ConfigError(f"{where}: {keys}key: cannot read {settings.key}: {e.strerror}") from None
    except crypto.Error as e:
        raise ConfigError(f"{where}: {keys}key: {settings.key}: not a PEM private key ({e})") from None
    verify = {}
    if settings.client_ca is not None:
        verify = dict(
            verify=True,
            caCerts=_certificates(settings.client_ca, f"{keys}client-ca", where),
            requireCertificate=True,
        )
    options = ssl.CertificateOptions(
        privateKey=key,
        certificate=chain[0],
        extraCertChain=chain[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableProtocols=list(protocols),
        **verify,
    )
    try:
        options.getContext()  # checks that the key matches the certificate
    except SSL.Error as e:
        raise ConfigError(
            f"{where}: {keys}key: {settings.key} does not go with certificate {settings.certificate} ({e})"
        ) from None
    return options


class ReloadableContext:
    """An old-style context factory whose options a reload may replace."""

    def __init__(self, options: ssl.CertificateOptions):
        self.options = options

    def getContext(self) -> SSL.Context:
        return self.options.getContext()

    def reload(self, settings: TLSSettings, where: str = "") -> bool:
        """Use the files of ``settings`` from now on; False (and logged) if broken."""
        try:
            self.options = certificate_options(settings, where)
        except ConfigError as e:
            log.error("TLS not reloaded, keeping the old certificate: {error}", error=str(e))
            return False
        return True


def negotiated_version(transport) -> str | None:
    """The TLS version of a connection ("TLSv1.3"), None for plain TCP."""
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return None
    handle = get_handle()
    if not isinstance(handle, SSL.Connection):
        return None
    return handle.get_protocol_version_name()


class LimitedTLSFactory(TLSMemoryBIOFactory):
    """TLS around a DNSStreamFactory, closing connections it refuses.

    Twisted's TLS factory wraps whatever the inner factory returns, None
    included, which leaves a refused connection open with no protocol:
    connection limits would turn into leaked sockets.
    """

    noisy = False

    def buildProtocol(self, addr):
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)
