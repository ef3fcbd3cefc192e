"""``aliasd-ctl``: control a running aliasd, as rndc and knotc do.

    aliasd-ctl [--config FILE | --state-dir DIR | --socket PATH] [--json] COMMAND [ARGS]
    aliasd-ctl [--config FILE | --state-dir DIR] restore BACKUP [--serial-floor N]

The commands go over the server's control socket (``control.sock`` in its
state directory: aliasd.service.control); each prints a line (or lines)
for a person, or the reply's data as JSON with ``--json``. The exit status
is 0 when the command was done, 1 when it failed (the message says why), 2
for a usage error, 3 when no server answers on the socket. ``restore`` runs
without the server (aliasd.service.restore).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from aliasd.base.config import DEFAULT_STATE_DIR, ConfigError
from aliasd.service.control import COMMANDS, SOCKET_NAME
from aliasd.service.restore import RestoreError, restore

NOT_RUNNING = 3


def _parser() -> argparse.ArgumentParser:
    rows = [(c.usage, c.help) for c in COMMANDS.values()]
    rows.append(("restore BACKUP", "put a backup back (server stopped); serials never go back"))
    parser = argparse.ArgumentParser(
        prog="aliasd-ctl",
        description="Control a running aliasd over its control socket.",
        epilog="commands:\n" + "\n".join(f"  {name:<26}{what}" for name, what in rows),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", help="the server's configuration file (its [server] state-dir)")
    where.add_argument("--state-dir", help="the server's state directory")
    where.add_argument("--socket", help="the control socket itself")
    parser.add_argument("--json", action="store_true", help="print the reply's data as JSON")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the reply (600)")
    parser.add_argument("--serial-floor", type=int, default=None,
                        help="restore: raise every zone's serial to at least this")
    parser.add_argument("command", help="a command (see below)")
    parser.add_argument("args", nargs="*", help="its arguments")
    return parser


def _state_dir(options) -> Path:
    if options.state_dir:
        return Path(options.state_dir)
    if options.config:
        return state_dir_of(Path(options.config))
    return DEFAULT_STATE_DIR


def state_dir_of(config: Path) -> Path:
    """The ``[server] state-dir`` of a configuration file, read alone: a
    mistake elsewhere in the file must not keep the operator from asking
    the server to reload it (the server names the mistake). Raises ConfigError."""
    try:
        with config.open("rb") as f:
            state_dir = tomllib.load(f).get("server", {}).get("state-dir")
    except OSError as e:
        raise ConfigError(f"{config}: cannot read configuration: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, AttributeError) as e:
        raise ConfigError(f"{config}: invalid TOML: {e}") from None
    if not isinstance(state_dir, str):
        return DEFAULT_STATE_DIR
    return config.resolve().parent / state_dir


def request(path: Path, command: str, args: Sequence[str], timeout: float) -> dict:
    """Send one request on the control socket; its reply (raises OSError
    when no server answers there)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"command": command, "args": list(args)}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection without a reply")
            data += chunk
    return json.loads(data)


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        path = Path(options.socket) if options.socket else _state_dir(options) / SOCKET_NAME
    except ConfigError as e:
        print(f"aliasd-ctl: {e}", file=sys.stderr)
        return 1
    if options.command == "restore":
        return _restore(options, path)
    if options.command not in COMMANDS:
        print(f"aliasd-ctl: unknown command {options.command!r} (commands: {', '.join(COMMANDS)}, restore)",
              file=sys.stderr)
        return 2
    args = list(options.args)
    if options.command == "backup" and args:
        args[0] = str(Path(args[0]).resolve())  # the server's working directory is not ours
    try:
        reply = request(path, options.command, args, options.timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"aliasd-ctl: aliasd is not running (nothing answers on {path})", file=sys.stderr)
        return NOT_RUNNING
    except PermissionError:
        print(f"aliasd-ctl: {path}: permission denied (run as the user aliasd runs as, or root)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"aliasd-ctl: {path}: {e}", file=sys.stderr)
        return NOT_RUNNING
    if not reply.get("ok"):
        if options.json:
            print(json.dumps({"error": reply.get("error")}))
        print(f"aliasd-ctl: {options.command}: {reply.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(reply.get("data"), indent=2) if options.json else reply.get("text"))
    return 0


def _restore(options, path: Path) -> int:
    if len(options.args) != 1 or options.socket:
        print("aliasd-ctl: usage: aliasd-ctl [--config FILE | --state-dir DIR] restore BACKUP "
              "[--serial-floor N]", file=sys.stderr)
        return 2
    try:
        request(path, "status", [], 5)
    except (OSError, ValueError):
        pass
    else:
        print(f"aliasd-ctl: restore: aliasd is running ({path} answers): stop it first", file=sys.stderr)
        return 1
    try:
        done = restore(Path(options.args[0]), path.parent, options.serial_floor)
    except (RestoreError, OSError) as e:
        print(f"aliasd-ctl: restore: {e}", file=sys.stderr)
        return 1
    if options.json:
        print(json.dumps({"done": done}, indent=2))
    else:
        print("\n".join(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
