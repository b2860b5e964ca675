"""An emulator of Twelve Labs' classify API v1.2 and of v1.3's embeddings and search.

Entry points: `classify_emulator.app.create_app` (ASGI app), `classify_emulator.serving.run`
(uvicorn, blocking), `classify_emulator.testing.running_emulator` (a served instance for
tests) and `classify_emulator.cli.main` (`python -m classify_emulator`). See docs/emulator.md.
"""
