"""An emulator of Twelve Labs' classify API v1.2 and of v1.3's embeddings and search.

Entry points: `classify_emulator.app.create_app` (ASGI app), `classify_emulator.serving.run`
(uvicorn, blocking), `classify_emulator.testing.running_emulator` (a served instance for
tests) and `classify_emulator.cli.main` (`python -m classify_emulator`). See docs/emulator.md.
"""

import os

# BLAS runs single-threaded here too, as in the gateway (classify_gateway/backends/v1_3/
# __init__.py), set before numpy is first imported (embeddings.py): the emulator's
# matrices are small, and idle BLAS threads of an emulator that shares a process or a
# machine with gateways and tests spin on the CPUs that those need.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
