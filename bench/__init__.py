"""Benchmarks of the sync (``make bench`` / ``python -m bench``): numbers printed and saved, never
asserted. Each figure stands beside its reference measured in the same run, as a ratio; results go
to ``bench/results/`` as JSON (gitignored).

The product's code lives in ``plugins/`` (Airflow's plugins folder, on ``sys.path`` in every
Airflow component); ``make`` exports it on ``PYTHONPATH``, and this adds it for a plain
``python -m bench`` too. Spawned worker processes inherit the parent's ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"

if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.append(str(PROJECT_ROOT / "plugins"))
