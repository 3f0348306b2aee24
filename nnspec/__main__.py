"""``python -m nnspec``: the ``nnspec`` command (also for ``torchrun -m nnspec``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
