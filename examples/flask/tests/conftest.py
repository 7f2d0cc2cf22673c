"""Make the example's modules importable as they are, without installing them: the directory
above this one goes first on ``sys.path``, as it is for ``flask run`` started there."""

import pathlib
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1]
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
