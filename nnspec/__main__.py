"""``python -m nnspec``: the ``nnspec`` command (also for ``torchrun -m nnspec``)."""

from nnspec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
