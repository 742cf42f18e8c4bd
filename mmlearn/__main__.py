"""``python -m mmlearn``: the same command line as ``mmlearn``."""

import sys

from mmlearn.cli import main

sys.exit(main())
