import sys

from hfmagic.cli import main

sys.exit(main())
