"""``python -m densparse ...``: the same as the ``densparse`` command."""

import sys

from densparse.cli import main

if __name__ == "__main__":
    sys.exit(main())
