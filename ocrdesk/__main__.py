"""`python -m ocrdesk`: the `ocrdesk` command."""

import sys

from ocrdesk.main import main

sys.exit(main())
