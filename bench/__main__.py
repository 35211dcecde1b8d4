"""`python3 -m bench [--records 1000000] [--shards 4] ...`: see bench/run.py and `python3 -m bench --help`."""

import sys

from bench.run import main

sys.exit(main())
