"""An emulator of the Twelve Labs classify API v1.2, with injectable faults.

Entry points: `emulator.app.create_app` (ASGI app), `emulator.server.run`
(uvicorn, blocking), `emulator.testing.running_emulator` (a served instance for
tests) and `emulator.cli.main` (`python -m emulator`). See docs/emulator.md.
"""
