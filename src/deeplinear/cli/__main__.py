"""``python -m deeplinear.cli``: the ``deeplinear`` command."""

import sys

from deeplinear.cli import main

sys.exit(main())
