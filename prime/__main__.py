import sys

from prime.cli import main

sys.exit(main())
