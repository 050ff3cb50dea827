"""``python -m bot`` is ``musher``."""

import sys

from bot.cli import main

sys.exit(main())
