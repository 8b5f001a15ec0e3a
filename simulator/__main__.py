"""`python -m simulator` runs the `evreserve-simulator` command."""

import sys

from simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
