import sys

from ivcontrast.cli import main

sys.exit(main())
