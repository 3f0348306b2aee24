"""The compiler's passes, one module each, run in order by ``pipeline.PIPELINE``.

Each module has ``run(ctx)`` of the one ``ir.CompileContext``, and a docstring
saying what it takes and gives. A pass may import ``nnspec.spec`` and the
compiler's shared modules (``ir``, ``expressions``, ``ops``, ``op_table``, ...),
never another pass: the types passes share live in ``ir.py``. The shapes pass's
parts are in ``walk/``.
"""
