"""``python -m geopurify.cli``: the same as the ``geopurify`` command."""

import sys

from . import main

sys.exit(main())
