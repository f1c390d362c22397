r"""Benchmarks of torch_ortho_patch's block-orthogonal parametrizations.

A thin wrapper around ``python -m torch_ortho_patch bench``, for running from a
checkout without installing the package::

    python benchmarks/bench_orthogonal.py --threads 1 --json results.json
    python benchmarks/plot.py results.json -o bench.png

``--help`` lists the options. See benchmarks/README.md.
"""

import os
import sys


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from torch_ortho_patch._bench import main

    sys.exit(main())
