"""`python -m crownq.report SWEEP_DIR ...` (same as the `crownq-report` console script)."""

import sys

from crownq.report.cli import main

sys.exit(main())
