import sys

from ssps.cli import main

sys.exit(main())
