"""``[log]``: which events reach twistd's log, by level and by category.

Why a module of its own: the levels apply to twistd's one log observer,
which twistd makes after ``makeService`` from its own options (``-n``,
``--logfile``, ``--syslog``). twistd lets an application choose that
observer as its ``ILogObserver`` component (the documented way for a
``.tac`` file); a plugin's service gets at the application when it is
attached to it. ``LoggingService`` does that: it makes the observer twistd
would make and wraps it in a ``FilteringLogObserver`` whose predicate
(twisted.logger's ``LogLevelFilterPredicate``) holds a level per logger
namespace. A category is the namespaces of the modules that log about it;
a reload sets the levels again.

An observer given with ``twistd --logger`` is twistd's to use as it is:
the levels do not apply to it.
"""

from __future__ import annotations

import signal
import sys

from twisted.application import service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)
from twisted.python import components, logfile

from aliasd.base.config import LogSettings

#: Each [log] category: the logger namespaces (module paths) it covers.
CATEGORY_NAMESPACES = {
    "resolution": ("aliasd.resolve",),
    "transfer": (
        "aliasd.answer.transfer_requests", "aliasd.replicate.transfer", "aliasd.replicate.axfr",
        "aliasd.replicate.journal", "aliasd.replicate.journaldb",
    ),
    "notify": ("aliasd.replicate.notify",),
    "update": ("aliasd.update", "aliasd.answer.update_requests"),
    "dnssec": ("aliasd.dnssec",),
}


def levels(settings: LogSettings, predicate: LogLevelFilterPredicate | None = None) -> LogLevelFilterPredicate:
    """``predicate`` (a new one if None) set to the levels of ``settings``."""
    if predicate is None:
        predicate = LogLevelFilterPredicate()
    predicate.clearLogLevels()
    predicate.setLogLevelForNamespace("", LogLevel.levelWithName(settings.level))  # "": every other namespace
    for category, level in settings.categories:
        for namespace in CATEGORY_NAMESPACES[category]:
            predicate.setLogLevelForNamespace(namespace, LogLevel.levelWithName(level))
    return predicate


def twistd_observer(config) -> ILogObserver:
    """The observer twistd makes from its options (``config``: its
    ServerOptions): syslog, stdout (``-n`` without ``--logfile``, or
    ``--logfile=-``) or a file rotated at 1 MB and on SIGUSR1."""
    if config.get("syslog"):
        from twisted.python import syslog

        return LegacyLogObserverWrapper(syslog.SyslogObserver(config.get("prefix", "")).emit)
    name = config.get("logfile") or ""
    if name == "-" or (config.get("nodaemon") and not name):
        return textFileLogObserver(sys.stdout)
    file = logfile.LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum, frame):
            from twisted.internet import reactor

            reactor.callFromThread(file.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return textFileLogObserver(file)


class LoggingService(service.MultiService):
    """The top service of ``twistd aliasd``: when twistd attaches it to its
    application, it gives the application the filtered log observer."""

    def __init__(self, config, predicate: LogLevelFilterPredicate):
        super().__init__()
        self.config = config  # twistd's options (None: not run by twistd)
        self.predicate = predicate
        self.observer = None  # twistd's log observer, once attached

    def setServiceParent(self, parent) -> None:
        if (
            self.config is not None
            and isinstance(parent, components.Componentized)
            and parent.getComponent(ILogObserver, None) is None
        ):
            observer = FilteringLogObserver(twistd_observer(self.config), [self.predicate])
            parent.setComponent(ILogObserver, observer)
        if isinstance(parent, components.Componentized):  # what a worker process stops writing to
            self.observer = parent.getComponent(ILogObserver, None)
        super().setServiceParent(parent)
