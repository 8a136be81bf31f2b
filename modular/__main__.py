"""``python -m modular``: see :mod:`modular.cli`."""

import sys

from modular.cli import main

sys.exit(main())
