"""``python -m kq`` is the ``kq`` command."""

from .cli import main

main()
