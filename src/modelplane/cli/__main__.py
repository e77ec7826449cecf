import sys

from modelplane.cli import main

sys.exit(main())
