import sys

from e2e.bench.run import main

sys.exit(main())
