"""Frames between the main process and its workers, and the change stream.

Why a module of its own: both sides of the control channel
(aliasd.service.workers in the main process, aliasd.listen.worker in each
worker) speak it. A frame is a pickled tuple ``(kind, seq, payload)`` behind
a four-octet length; the channel is a Unix stream socket pair made before
the fork, so only the two processes that share it can write to it.

The change stream carries every change of the zone registry
(aliasd.zones.registry) as the method call that made it. A zone's file
(``ZoneSource``) and the indexes shared by its versions (``ZoneBase``) are
large and rarely change: each is sent once, under a token, and later
frames name it by its token (pickle's ``persistent_id``), so a new version
of a zone (an ALIAS change) costs its overlay, not its records. The tokens
of objects the main process had at the fork are inherited by the worker
with the objects themselves; a token is dropped on both sides once the main
process no longer holds the object.
"""

from __future__ import annotations

import io
import itertools
import pickle
import struct
import weakref

from aliasd.zones.zone import ZoneBase, ZoneVersion
from aliasd.zones.zonefile import ZoneSource

LENGTH = struct.Struct("!I")

#: Frame kinds, main process -> worker.
CHANGES = "changes"  # payload: (definitions, calls, dropped tokens); acked with its seq
COUNTS = "counts"  # a scrape: send the counters now, as a STATS frame with this seq
#: Frame kinds, worker -> main process.
READY = "ready"  # the worker's loop runs: it reads the sockets from now on
ACK = "ack"  # seq: the last change frame applied
STATS = "stats"  # payload: {counter key: increment}; seq: the COUNTS it answers, or 0
LOG = "log"  # payload: (level name, namespace, text)
FORWARD = "forward"  # payload: (listening socket index, client address, message)
HAND_OVER = "hand over"  # payload: (address family, octets read); a TCP connection's socket rides along (SCM_RIGHTS)

#: Objects sent once and named by token afterwards.
SHARED_TYPES = (ZoneSource, ZoneBase)


def encode(kind: str, seq: int, payload) -> bytes:
    """One frame, length first."""
    body = pickle.dumps((kind, seq, payload), protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


class FrameReader:
    """Cuts a byte stream into frames: feed it what was read, take the frames."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple]:
        self._buffer += data
        frames = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buffer, start)
            end = start + LENGTH.size + size
            if len(buffer) < end:
                break
            frames.append(pickle.loads(bytes(buffer[start + LENGTH.size : end])))
            start = end
        del buffer[:start]
        return frames


class _Ref(weakref.ref):
    """A weak reference to a shared object that says what to forget when
    the object goes (a weakref.finalize per object cost four times as
    much: 20,000 of them at 10,000 zones)."""

    __slots__ = ("key", "token", "records")


class SharedObjects:
    """The main process's side of the token table: object -> token.

    Holds no strong references: when the main process frees an object its
    token is queued to be dropped by the workers (``take_dropped``).
    """

    def __init__(self):
        self._tokens: dict[int, int] = {}  # id(object) -> token
        self._refs: dict[int, weakref.ref] = {}  # token -> the object
        # id(a source's records dict) -> the source's token: the indexes
        # and versions built on a file name its records, not copy them.
        self._records: dict[int, int] = {}
        self._dropped: list[int] = []
        self._next = itertools.count(1)
        # The configured files as the workers have them (origin -> source):
        # a change of the set is sent as what differs. None: not known yet
        # (the next set goes whole).
        self.sent_sources: dict | None = None

    def token(self, obj) -> int | None:
        return self._tokens.get(id(obj))

    def records_of(self, obj) -> int | None:
        """The token of the source whose records ``obj`` is, if any."""
        return self._records.get(id(obj))

    def add(self, obj) -> int:
        token = next(self._next)
        key = id(obj)
        self._tokens[key] = token
        records = id(obj.records) if isinstance(obj, ZoneSource) else None
        ref = self._refs[token] = _Ref(obj, self._ref_gone)
        ref.key, ref.token, ref.records = key, token, records
        if records is not None:  # (the source holds its records: they live as long)
            self._records[records] = token
        return token

    def _ref_gone(self, ref: "_Ref") -> None:
        self._gone(ref.key, ref.token, ref.records)

    def _gone(self, key: int, token: int, records: int | None) -> None:
        if self._tokens.get(key) == token:
            del self._tokens[key]
        if records is not None and self._records.get(records) == token:
            del self._records[records]
        self._refs.pop(token, None)
        self._dropped.append(token)

    def take_dropped(self) -> list[int]:
        dropped, self._dropped = self._dropped, []
        return dropped

    def objects(self) -> "TokenTable":
        """Token -> object: what a worker forked now starts with."""
        return TokenTable(self._refs, self._tokens)


class TokenTable(dict):
    """A forked worker's token table: the objects it was sent, held
    strongly, and those it inherited by the fork, found through the main
    process's weak references (``refs``: token -> weak reference; ``ids``:
    id(object) -> token, the worker's copies) when first named.

    Why: holding every inherited file and index strongly from the start
    wrote to each of them (its reference count), which copied the pages of
    all zones into every worker (27 MiB each at 10,000 zones). An
    inherited object the worker's registry is about to let go of is held
    here first (``pin``), so it stays until the main process drops its
    token, as a sent one does.
    """

    def __init__(self, refs: dict, ids: dict):
        super().__init__()
        self._refs = refs
        self._ids = ids
        self._dropped: set[int] = set()

    def __missing__(self, token: int):
        ref = self._refs.get(token) if token not in self._dropped else None
        obj = ref() if ref is not None else None
        if obj is None:
            raise KeyError(token)
        self[token] = obj
        return obj

    def pin(self, obj) -> None:
        """Hold ``obj`` if it is an inherited object not held yet."""
        token = self._ids.get(id(obj)) if obj is not None else None
        if token is None or token in self or token in self._dropped:
            return
        ref = self._refs.get(token)
        if ref is not None and ref() is obj:
            self[token] = obj

    def pop(self, token: int, default=None):
        self._dropped.add(token)
        return super().pop(token, default)


def _pin_displaced(registry, objects: TokenTable, method: str, args: tuple) -> None:
    """Hold the inherited files and indexes the registry call is about to
    replace or remove (see TokenTable)."""
    if method == CONFIGURE_CHANGES:
        origins = [*args[0], *args[1]]
    elif method == "configure":
        origins = [o for o, s in registry.sources.items() if args[0].get(o) is not s]
    elif method == "set_source":
        origins = [args[0].origin]
    elif method == "serve":
        origins = [args[0].origin]
    elif method == "unpublish":
        origins = [args[0]]
    else:
        return
    for origin in origins:
        objects.pin(registry.sources.get(origin))
        version = registry.versions.get(origin)
        if version is not None:
            objects.pin(version.source)
            objects.pin(version.base)


class _Pickler(pickle.Pickler):
    """Names every shared object the main process has sent by its token
    (one not sent yet is pickled inline), and a sent file's records by
    its token too, except ``defining`` and its records."""

    def __init__(self, file, shared: SharedObjects):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared
        self.defining = None

    def persistent_id(self, obj):
        if isinstance(obj, SHARED_TYPES):
            return self.shared.token(obj) if obj is not self.defining else None
        if type(obj) is dict:
            token = self.shared.records_of(obj)
            if token is not None and not (isinstance(self.defining, ZoneSource) and self.defining.records is obj):
                return ("records", token)
        return None


def _reached(calls: list[tuple[str, tuple]]):
    """The shared objects the registry calls pass: sources, and a served
    version's source and indexes."""
    for _, args in calls:
        for arg in args:
            if isinstance(arg, SHARED_TYPES):
                yield arg
            elif isinstance(arg, ZoneVersion):
                yield arg.source
                yield arg.base
            elif isinstance(arg, dict):
                yield from (value for value in arg.values() if isinstance(value, SHARED_TYPES))


def _as_sent(shared: SharedObjects, calls: list[tuple[str, tuple]]) -> list[tuple[str, tuple]]:
    """The calls as they go: a new set of files as the files added or
    changed and the origins removed (a zone created at runtime costs that
    zone, not the set), a dynamic update's file without what only the
    encoder needs."""
    sent = []
    for method, args in calls:
        if method == "configure":
            sources, zone_set_changed = args
            before = shared.sent_sources
            shared.sent_sources = dict(sources)
            if before is not None:
                changed, removed = _in_order(before, sources), []
                if changed is None:
                    changed = {o: s for o, s in sources.items() if before.get(o) is not s}
                    removed = [o for o in before if o not in sources]
                sent.append((CONFIGURE_CHANGES, (changed, removed, zone_set_changed)))
                continue
        elif method == "set_source":
            if shared.sent_sources is not None:
                shared.sent_sources[args[0].origin] = args[0]
            sent.append((method, args[:1]))
            continue
        sent.append((method, args))
    return sent


def _in_order(before: dict, sources: dict) -> dict | None:
    """The files of ``sources`` that are not those of ``before``, when both
    hold the very same origins in the same order (a reload of some files,
    a runtime zone changed: the registry's dict copied, some values
    replaced), else None. Without a lookup by name: ten thousand lookups
    (dnspython's name hash collides for names alike) took 10 ms of the
    reactor at every reload."""
    if len(before) != len(sources):
        return None
    changed = {}
    for (old, was), (origin, source) in zip(before.items(), sources.items()):
        if old is not origin:
            return None
        if was is not source:
            changed[origin] = source
    return changed


#: A change frame's call for a new set of files, as what differs (see ``apply_changes``).
CONFIGURE_CHANGES = "configure changes"


def _chains_joined(calls: list[tuple[str, tuple]]) -> list[tuple[str, tuple]]:
    """The calls with each run of back-to-back ``set_source`` calls, each
    made from the file of the one before (the updates of one zone answered
    in one turn), as one call from the first one's file: a worker derives
    the newest file once, copying the zone's records once per frame, not
    once per update (at 10,000 records that copy was half of a worker's
    time under 8 updating clients). A file that another call names (a
    version served from it) is not skipped. Fewer than two ``set_source``
    calls: nothing to join, and no pass over what the other calls name (a
    reload's ``configure`` names ten thousand files: 3-11 ms before the
    frame went out)."""
    if sum(method == "set_source" for method, _ in calls) < 2:
        return calls
    named = {id(obj) for call in calls if call[0] != "set_source" for obj in _reached([call])}
    joined: list[tuple[str, tuple]] = []
    for method, args in calls:
        if method == "set_source" and joined and joined[-1][0] == "set_source":
            source, previous, touched = args
            last_source, last_previous, last_touched = joined[-1][1]
            if previous is not None and previous is last_source and id(last_source) not in named:
                joined[-1] = (method, (source, last_previous, set(last_touched) | set(touched)))
                continue
        joined.append((method, args))
    return joined


def encode_changes(shared: SharedObjects, calls: list[tuple[str, tuple]]) -> tuple:
    """The payload of a change frame for registry ``calls``.

    First the shared objects they reach that no worker has yet: a dynamic
    update's file as the owners it changed in the file it was made from
    (``derived``: what changed, not the zone), every other one pickled
    once (in one pickle, naming what it shares by token). Then the calls,
    naming every shared object by token. Then the tokens of objects the
    main process has freed since."""
    calls = _chains_joined(calls)
    derived = []
    for method, args in calls:
        if method == "set_source":
            source, previous, touched = args
            base_token = shared.token(previous) if previous is not None else None
            if base_token is not None and shared.token(source) is None:
                changes = {key: source.records.get(key) for key in touched}
                derived.append((shared.add(source), base_token, changes))
    sent = _as_sent(shared, calls)
    new = {}
    for obj in _reached(sent):
        if shared.token(obj) is None:
            new.setdefault(id(obj), obj)
    # Files first: the indexes built on a file name its records.
    ordered = sorted(new.values(), key=lambda obj: not isinstance(obj, ZoneSource))
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, shared)
    tokens = []
    for obj in ordered:
        pickler.defining = obj
        pickler.dump(obj)
        tokens.append(shared.add(obj))
    definitions = (derived, tokens, buffer.getvalue())
    buffer = io.BytesIO()
    _Pickler(buffer, shared).dump(sent)
    return definitions, buffer.getvalue(), shared.take_dropped()


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, objects: dict):
        super().__init__(io.BytesIO(data))
        self.objects = objects

    def persistent_load(self, pid):
        if isinstance(pid, tuple):  # ("records", token): that file's records
            return self.objects[pid[1]].records
        return self.objects[pid]


def decode_changes(objects: dict, payload: tuple) -> list[tuple[str, tuple]]:
    """The registry calls of a change frame; ``objects`` (the worker's
    token table) learns the frame's definitions and forgets its drops."""
    (derived, tokens, definitions), calls, dropped = payload
    for token, base_token, changes in derived:
        objects[token] = objects[base_token].with_owners(changes)
    unpickler = _Unpickler(definitions, objects)
    for token in tokens:  # in order: each names only earlier ones
        objects[token] = unpickler.load()
    result = _Unpickler(calls, objects).load()
    for token in dropped:
        objects.pop(token, None)
    return result


def apply_changes(registry, objects: dict, payload: tuple) -> None:
    """Replay a change frame on a worker's registry (aliasd.zones.registry)."""
    for method, args in decode_changes(objects, payload):
        if isinstance(objects, TokenTable):
            _pin_displaced(registry, objects, method, args)
        if method == CONFIGURE_CHANGES:
            changed, removed, zone_set_changed = args
            sources = dict(registry.sources)
            for origin in removed:
                sources.pop(origin, None)
            sources.update(changed)
            registry.configure(sources, zone_set_changed)
        else:
            getattr(registry, method)(*args)
