"""``python -m pusherd`` runs the server (same as the ``pusherd`` command)."""

from pusherd.cli import main

raise SystemExit(main())
