"""`python -m benchmarks`: run the benchmark (options: `python -m benchmarks --help`)."""

import sys

from benchmarks.run import main

sys.exit(main())
