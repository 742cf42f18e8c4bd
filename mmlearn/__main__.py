import sys

from mmlearn.cli import main

sys.exit(main())
