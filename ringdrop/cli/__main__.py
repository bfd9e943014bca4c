"""`python -m ringdrop.cli`, the same as the `ringdrop` command."""

import sys

from ringdrop.cli.app import main

sys.exit(main())
