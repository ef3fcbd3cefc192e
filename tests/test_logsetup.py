"""Unit tests: [log] levels on twistd's observer (aliasd.service.logsetup)."""

from __future__ import annotations

from twisted.application import service
from twisted.logger import ILogObserver, LogLevel, PredicateResult

from aliasd.base.config import LogSettings
from aliasd.service import logsetup


def event(namespace: str, level: LogLevel, text: str = "x") -> dict:
    return {"log_namespace": namespace, "log_level": level, "log_format": text, "log_time": 0.0}


def passes(predicate, namespace: str, level: LogLevel) -> bool:
    return predicate(event(namespace, level)) != PredicateResult.no


def test_a_category_has_its_own_level_and_the_rest_the_overall_one():
    predicate = logsetup.levels(LogSettings("warn", (("update", "debug"), ("resolution", "error"))))
    assert not passes(predicate, "aliasd.service.tap", LogLevel.info)
    assert passes(predicate, "aliasd.service.tap", LogLevel.warn)
    assert not passes(predicate, "log_legacy", LogLevel.info)  # Twisted's own lines follow `level`
    assert passes(predicate, "aliasd.update.dynamic", LogLevel.debug)
    assert passes(predicate, "aliasd.answer.update_requests", LogLevel.debug)
    assert not passes(predicate, "aliasd.resolve.resolution", LogLevel.warn)
    assert passes(predicate, "aliasd.resolve.upstream", LogLevel.error)
    # Set again (a reload): the old category levels go.
    logsetup.levels(LogSettings("info"), predicate)
    assert passes(predicate, "aliasd.service.tap", LogLevel.info)
    assert not passes(predicate, "aliasd.update.dynamic", LogLevel.debug)
    assert passes(predicate, "aliasd.resolve.resolution", LogLevel.info)


def test_every_category_names_modules_that_exist():
    import importlib

    for category, namespaces in logsetup.CATEGORY_NAMESPACES.items():
        for namespace in namespaces:
            assert importlib.import_module(namespace), category


def test_the_application_gets_a_filtered_observer_of_twistds_log_file(tmp_path):
    application = service.Application("aliasd")
    predicate = logsetup.levels(LogSettings("warn"))
    logsetup.LoggingService({"logfile": str(tmp_path / "aliasd.log")}, predicate).setServiceParent(application)
    observer = application.getComponent(ILogObserver)
    observer(event("aliasd.service.tap", LogLevel.info, "hidden line"))
    observer(event("aliasd.service.tap", LogLevel.warn, "kept line"))
    text = (tmp_path / "aliasd.log").read_text()
    assert "kept line" in text and "hidden line" not in text


def test_without_twistd_the_application_is_left_alone():
    application = service.Application("aliasd")
    logsetup.LoggingService(None, logsetup.levels(LogSettings())).setServiceParent(application)
    assert application.getComponent(ILogObserver, None) is None
