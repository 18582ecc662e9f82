"""`python -m gated.cli ...`: what the tests and the simulator start gate processes with."""

import sys

from gated.cli.main import main

sys.exit(main())
