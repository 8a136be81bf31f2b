"""``python -m theory.claims``: the claims audit without the ``theory`` command dispatcher."""

import sys

from theory.claims import main

sys.exit(main())
