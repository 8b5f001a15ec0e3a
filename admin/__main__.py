"""``python -m admin``: the same as ``evreserve-admin``."""

import sys

from admin.cli import main

if __name__ == "__main__":
    sys.exit(main())
