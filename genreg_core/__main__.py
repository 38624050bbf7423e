"""``python -m genreg_core`` is the ``genreg`` command."""

from genreg_core.cli.main import main

raise SystemExit(main())
