"""``python -m aliasd check ...``: the same as ``aliasd-check ...``."""

import sys

from aliasd.service.check import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "check":
        sys.exit("usage: python -m aliasd check [--config FILE] [--zone NAME=FILE ...]")
    sys.exit(main(args[1:]))
