"""The manual against the code: configuration keys, defaults and links.

docs/configuration.md must document exactly the keys that the configuration
reader accepts, section by section, so that neither can change without the
other. The accepted keys are taken from the code, not from a list kept here:

* aliasd.base.config reads every TOML table through a ``_Section``, and
  ``_Section.take`` is the one place where a key is read (``number`` and
  ``strings`` go through it); whatever is left in a table when the section
  is finished is an "unknown key" error. So the keys a section accepts are
  exactly the keys ``take`` is asked for while that section is read.
* The test wraps ``_Section.__init__`` and ``_Section.take`` to record, per
  section label, every key asked for, and runs ``settings_from_dict`` on a
  configuration that makes every kind of table be read: a TSIG key, a zone
  with an update rule, ``[zone-directory]`` and ``[catalog]`` (read only when
  present), TLS files (opened while read). Every key is asked for whether or
  not the table holds it, so the configuration needs no keys of its own
  beyond those that make a section be read at all.
* As a check that this configuration reaches every read, config.py's source
  is parsed with ``ast``: every string literal passed as the key of a
  ``take``/``number``/``strings`` call (or of the ``count`` helper of
  ``[rate-limit]``, or iterated into such a call by a ``for`` loop) must
  have been recorded, and so must every top-level table named in a
  ``top.table.pop("...")`` call. A key read only in a new branch therefore
  fails this test until the configuration below reaches it.

The documented sections are the headings of docs/configuration.md whose
first code span is a TOML table (``## `[server]` ``), plus "Update rules"
(the entries of ``update = [...]``); a section's documented keys are the
first code spans of its table rows. Defaults written as one TOML literal in
the "default" column are compared with the settings of an empty
configuration.

Links: every relative link in README.md and docs/*.md must lead to a file
that exists and, for a ``#fragment`` into a Markdown file, to a heading
there (GitHub's anchor rules); every page of docs/ must be linked from
README.md or docs/README.md.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import tomllib
from pathlib import Path

import pytest

from aliasd.base import config

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
REFERENCE = DOCS / "configuration.md"

#: The documented sections that are not TOML tables of their own: the
#: entries of ``update = [...]`` and of ``[api] keys = [...]``.
UPDATE_RULES = "update"
UPDATE_RULES_HEADING = "Update rules"
API_KEYS = "api keys"
API_KEYS_HEADING = "API keys"
POLICY_KEYS = "policy keys"
POLICY_KEYS_HEADING = "Policy keys"


# -- what the code accepts ----------------------------------------------------


def _section_id(label: str) -> str:
    """A _Section label as the reference names the section."""
    if "update entry" in label:
        return UPDATE_RULES
    if label.startswith("[api] keys entry"):
        return API_KEYS
    if label.startswith("[dnssec-policy.") and " keys entry" in label:
        return POLICY_KEYS
    label = re.sub(r"^\[dnssec-policy\.[^\]]+\]$", "[dnssec-policy.NAME]", label)
    label = re.sub(r"^\[keys\.[^\]]+\]$", "[keys.NAME]", label)
    return re.sub(r'^\[zones\."[^"]*"\]$', '[zones."NAME"]', label)


def _configuration(tmp_path: Path) -> dict:
    """A configuration in which every kind of table is read."""
    (tmp_path / "zones.d").mkdir()
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("")
    rule = {"key": "k"}
    return {
        "keys": {"k": {"secret": "c2VjcmV0"}},
        "zones": {"example.test": {"file": "example.test.zone", "update": [rule]}},
        "zone-defaults": {"update": [rule]},
        "zone-directory": {"path": "zones.d"},
        "catalog": {"zone": "catalog.test.", "update": [rule]},
        "tls": {"certificate": "cert.pem", "key": "key.pem", "client-ca": "ca.pem"},
        "api": {"listen": ["127.0.0.1:8081"], "tls-certificate": "cert.pem", "tls-key": "key.pem",
                "keys": [{"name": "admin", "secret": "s"}]},
        "dnssec-policy": {"p": {"keys": [{"role": "csk", "lifetime": "365d"}]}},
    }


def accepted_keys(tmp_path: Path, monkeypatch) -> dict[str, set[str]]:
    """{section: keys it accepts}, recorded from config.settings_from_dict."""
    asked: dict[str, set[str]] = {}
    init, take = config._Section.__init__, config._Section.take

    def recording_init(self, where, label, table):
        asked.setdefault(label, set())
        init(self, where, label, table)

    def recording_take(self, key, *args, **kwargs):
        asked.setdefault(self.label, set()).add(key)
        return take(self, key, *args, **kwargs)

    monkeypatch.setattr(config._Section, "__init__", recording_init)
    monkeypatch.setattr(config._Section, "take", recording_take)
    config.settings_from_dict(_configuration(tmp_path), "test.toml", tmp_path)
    sections: dict[str, set[str]] = {}
    for label, keys in asked.items():
        sections.setdefault(_section_id(label), set()).update(keys)
    return sections


_READERS = {"take", "number", "strings", "count", "duration", "endpoints"}


def _reader_call(node: ast.AST) -> ast.expr | None:
    """The key argument of a call that reads a key, else None."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0] if name in _READERS else None


def keys_in_source() -> tuple[set[str], set[str]]:
    """(keys read in config.py, top-level tables popped), from its source."""
    tree = ast.parse(Path(inspect.getsourcefile(config)).read_text())
    keys, tables = set(), set()
    loops = {}  # loop variable -> the string constants it iterates over
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Name)
                and isinstance(node.iter, (ast.Tuple, ast.List))
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts)):
            loops.setdefault(node.target.id, set()).update(e.value for e in node.iter.elts)
    for node in ast.walk(tree):
        arg = _reader_call(node)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            if re.fullmatch(r"[a-z][a-z0-9-]*", arg.value):  # not text.count(":")
                keys.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id in loops:
            keys.update(loops[arg.id])
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "pop" and ast.unparse(node.func.value) == "top.table"
                and node.args and isinstance(node.args[0], ast.Constant)):
            tables.add(node.args[0].value)
    return keys, tables


# -- what the reference documents ------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")


def documented() -> dict[str, dict[str, list[str]]]:
    """{section: {key: [cells of its table row]}} from docs/configuration.md."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    in_code = False
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = re.match(r"#{2,6} (.*)", line)
        if heading:
            text = heading.group(1).strip()
            code = _CODE.search(text)
            if code and code.group(1).startswith("["):
                current = code.group(1)
            elif text == UPDATE_RULES_HEADING:
                current = UPDATE_RULES
            elif text == API_KEYS_HEADING:
                current = API_KEYS
            elif text == POLICY_KEYS_HEADING:
                current = POLICY_KEYS
            else:
                current = None
            if current is not None:
                assert current not in sections, f"{REFERENCE}: section {current} documented twice"
                sections[current] = {}
            continue
        if current is not None and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            key = _CODE.match(cells[0]).group(1)
            assert key not in sections[current], f"{REFERENCE}: {current} {key} documented twice"
            sections[current][key] = cells
    return sections


# -- the tests -------------------------------------------------------------------


def test_every_key_the_reader_asks_for_is_reached_by_this_test(tmp_path, monkeypatch):
    sections = accepted_keys(tmp_path, monkeypatch)
    recorded = set().union(*sections.values())
    keys, tables = keys_in_source()
    assert keys, "no key reads found in config.py: has the reader changed shape?"
    missing = keys - recorded
    assert not missing, (
        f"config.py reads {sorted(missing)}, but the configuration in {__name__}._configuration "
        "never reaches those reads: extend it so that every section is read")
    labels = set(sections)
    unread = {t for t in tables if f"[{t}]" not in labels}
    assert not unread, f"top-level tables {sorted(unread)} are never read here: extend _configuration"


def test_reference_documents_exactly_the_accepted_keys(tmp_path, monkeypatch):
    accepted = {s: k for s, k in accepted_keys(tmp_path, monkeypatch).items() if k}  # not [keys], [zones]
    docs = {s: set(k) for s, k in documented().items()}
    problems = []
    for section in sorted(accepted.keys() | docs.keys()):
        if section not in docs:
            problems.append(f"section {section} is accepted but has no heading in {REFERENCE.name}")
            continue
        if section not in accepted:
            problems.append(f"section {section} is documented but config.py does not read it")
            continue
        for key in sorted(accepted[section] - docs[section]):
            problems.append(f"{section} {key}: accepted by config.py, not documented")
        for key in sorted(docs[section] - accepted[section]):
            problems.append(f"{section} {key}: documented, but config.py rejects it")
    assert not problems, "\n".join(problems)


def _as_plain(value):
    if isinstance(value, (tuple, list)):
        return [_as_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def test_documented_defaults_match_the_code(tmp_path):
    empty = config.settings_from_dict({}, "test.toml", tmp_path)
    zone = config.ZoneSettings(config.parse_zone_name("example.test"), None)
    objects = {
        "[server]": empty.server, "[resolver]": empty.resolver, "[statistics]": empty.statistics,
        "[tls]": empty.tls, "[rate-limit]": empty.rate_limit, "[dnssec]": empty.dnssec, "[api]": empty.api,
        API_KEYS: config.ApiKey("name", "secret"), "[dnssec-policy.NAME]": config.DnssecPolicy("p"),
        '[zones."NAME"]': zone, "[zone-defaults]": zone, "[catalog]": zone,
    }
    compared, wrong = 0, []
    for section, keys in documented().items():
        settings = objects.get(section)
        if settings is None:
            continue
        names = {f.name for f in dataclasses.fields(settings)}
        for key, cells in keys.items():
            attribute = key.replace("-", "_")
            default = _CODE.match(cells[2]) if len(cells) > 3 else None
            if attribute not in names or default is None:
                continue
            try:
                value = tomllib.loads(f"v = {default.group(1)}")["v"]
            except tomllib.TOMLDecodeError:
                continue  # prose, such as "as `responses-per-second`"
            compared += 1
            actual = _as_plain(getattr(settings, attribute))
            if actual != value:
                wrong.append(f"{section} {key}: documented default {value!r}, code {actual!r}")
    assert compared >= 30, f"only {compared} defaults compared: has the table layout changed?"
    assert not wrong, "\n".join(wrong)


# -- links ---------------------------------------------------------------------------

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``."""
    anchors, seen = set(), {}
    for line in _without_code(page.read_text().replace("`", "")).splitlines():
        heading = re.match(r"#{1,6} (.*)", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1).strip())
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path):
    for target in _LINK.findall(_without_code(page.read_text())):
        if not re.match(r"[a-z]+:", target):
            yield target


PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_lead_to_files_and_headings_that_exist(page):
    broken = []
    for target in _links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif fragment and file.suffix == ".md" and fragment not in _anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}:\n" + "\n".join(broken)


def test_readme_leads_into_the_manual_and_every_page_is_linked():
    readme = REPO / "README.md"
    into_docs = [t for t in _links(readme) if t.startswith("docs/")]
    assert "docs/README.md" in into_docs and "docs/configuration.md" in into_docs, into_docs
    linked = set()
    for page in (readme, DOCS / "README.md"):
        for target in _links(page):
            path = target.partition("#")[0]
            if path:
                linked.add((page.parent / path).resolve())
    unlinked = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked and p.name != "README.md"]
    assert not unlinked, f"pages of docs/ linked from neither README.md nor docs/README.md: {unlinked}"


def test_front_page_stays_short():
    assert len((REPO / "README.md").read_bytes()) < 8192
