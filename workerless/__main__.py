"""``python -m workerless``: the same as the ``workerless`` command."""

from ._cli import main

raise SystemExit(main())
