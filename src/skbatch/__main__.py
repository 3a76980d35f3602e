"""``python -m skbatch``: the same as the ``skbatch`` command."""

import sys

from skbatch._cli import main

if __name__ == "__main__":
    sys.exit(main())
