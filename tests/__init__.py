"""The test suite. BLAS runs single-threaded in every test process, as in the gateway
(classify_gateway/backends/v1_3/__init__.py) and the emulator: set here, before any test
module or fixture imports numpy, because a test process runs the v1.3 scoring and the
emulator's embeddings on small matrices while gateways, emulators and Redis servers share
the machine's CPUs, and idle BLAS threads spin on them."""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
