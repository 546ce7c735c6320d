"""``python -m lightray.cli``: the same as the ``lightray`` command."""

import sys

from lightray.cli import main

sys.exit(main())
