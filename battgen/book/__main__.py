"""``python -m battgen.book run|list|reports|mathjax``: see :mod:`battgen.book.cli`."""

import sys

from battgen.book.cli import main

sys.exit(main())
