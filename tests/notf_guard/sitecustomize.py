"""The TensorFlow-free tier's guard (conftest puts this directory first on PYTHONPATH for `-m "not tf"` runs).

With MAASCTL_TEST_FORBID_TF=1, importing tensorflow or keras raises ImportError naming the tier, in the test
process and in every Python subprocess it starts; ATTEMPTS records each try, so a caller that swallows the
ImportError still fails the run (conftest's pytest_sessionfinish).
"""

from __future__ import annotations

import os
import sys

ATTEMPTS: list[str] = []
FORBIDDEN = ("tensorflow", "keras", "tf_keras")


class _ForbidTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            ATTEMPTS.append(name)
            sys.stderr.write(f"notf_guard: {name} imported in the TensorFlow-free test tier\n")
            raise ImportError(f"{name} imported in the TensorFlow-free test tier (mark the test `tf`)")


if os.environ.get("MAASCTL_TEST_FORBID_TF") == "1" and not any(isinstance(f, _ForbidTensorFlow)
                                                               for f in sys.meta_path):
    sys.meta_path.insert(0, _ForbidTensorFlow())
