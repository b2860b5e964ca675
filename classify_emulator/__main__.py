"""`python -m classify_emulator --listen HOST:PORT`."""

from classify_emulator.cli import main

raise SystemExit(main())
