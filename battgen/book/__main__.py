"""``python -m battgen.book run|list|reports``: see :mod:`battgen.book.runner`."""

import sys

from battgen.book.runner import main

sys.exit(main())
