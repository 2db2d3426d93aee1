import sys

from webhook_operator.cli import main

sys.exit(main())
