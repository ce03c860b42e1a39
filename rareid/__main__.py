"""``python -m rareid`` runs the same command as ``rareid``."""

from rareid.cli import main

if __name__ == "__main__":
    main()
