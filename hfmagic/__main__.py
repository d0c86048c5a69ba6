import sys

from hfmagic.surface.cli import main

sys.exit(main())
