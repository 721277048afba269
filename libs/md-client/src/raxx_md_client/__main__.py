"""`python -m raxx_md_client` = `raxx-md`."""

import sys

from raxx_md_client.cli import main

sys.exit(main())
