"""`python -m emulator --listen HOST:PORT`."""

from emulator.cli import main

raise SystemExit(main())
