"""The v1.3 backend: classify's numbers computed from Twelve Labs v1.3 Marengo embeddings.

BLAS runs single-threaded in the gateway unless the environment says otherwise (set
before numpy is first imported, which is here): the matrices are small (prompts x
segments of one video), a gateway pod has about one CPU, and a multi-threaded BLAS on a
busy node waits for its threads while the event loop, which runs the math, stalls.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
