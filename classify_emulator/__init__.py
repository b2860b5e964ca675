"""An emulator of the Twelve Labs classify API v1.2, with injectable faults.

Entry points: `classify_emulator.app.create_app` (ASGI app), `classify_emulator.serving.run`
(uvicorn, blocking), `classify_emulator.testing.running_emulator` (a served instance for
tests) and `classify_emulator.cli.main` (`python -m classify_emulator`). See docs/emulator.md.
"""
