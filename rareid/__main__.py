"""``python -m rareid`` runs the same command as ``rareid``."""

import sys

from rareid.cli import main

if __name__ == "__main__":
    sys.exit(main())
