"""API fuzzing (schemathesis).

Hypothesis keeps caches in ``.hypothesis/`` of the working directory as soon as the suite is
collected; they go to a temporary folder instead, removed when the run ends, so a run leaves
nothing in the checkout.
"""

import atexit
import os
import shutil
import tempfile

if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
    _storage = tempfile.mkdtemp(prefix="cairn-hypothesis-")
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _storage
    atexit.register(shutil.rmtree, _storage, ignore_errors=True)
