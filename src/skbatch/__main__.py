import sys

from skbatch._cli import main

sys.exit(main())
