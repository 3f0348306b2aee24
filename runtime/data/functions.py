"""Data functions and Dataset classes named in the spec, called with its args:
``{function: package.module:name, args: {...}, paths: [arg, ...]}``.

Only the args named in ``paths`` are paths: a string, or a list of strings, each
resolved relative to the spec's folder; every other arg goes to the call as written.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from torch.utils.data import Dataset

from ..custom import allowed_module
from .base import ReaderBase, first_line, suggest

__all__ = ["FUNCTION", "FunctionSources"]

FUNCTION = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class FunctionSources(ReaderBase):
    def function(
        self,
        name: str,
        path: tuple,
        args: dict[str, Any] | None = None,
        paths: list[str] | None = None,
    ) -> tuple[Any, Any]:
        """(train, val) of a data function or Dataset class. A call that returns a
        pair is (train, val); one that returns a Dataset or a mapping is train."""
        where = path if args is None else (*path, "function")
        if not FUNCTION.match(name):
            raise self.error(
                where, f"data function {name!r}: expected 'package.module:name'"
            )
        module, attr = allowed_module(
            name, self.allow_imports, f"data function {name!r}", where, self.error
        )
        module_name = name.partition(":")[0]
        function = getattr(module, attr, None)
        if not callable(function):
            raise self.error(
                where, f"module {module_name!r} has no function or class {attr!r}"
            )
        if args is None:  # the string form: a function of no arguments
            result = function()
            if not (isinstance(result, tuple) and len(result) == 2):
                raise self.error(
                    path,
                    f"data function {name!r} must return (train, val); val may be None",
                )
            return result
        kwargs = self.arguments(name, function, args, paths or [], path)
        result = function(**kwargs)
        if isinstance(result, tuple) and len(result) == 2 and not _is_data(result):
            return result
        if _is_data(result):
            return result, None
        raise self.error(
            where,
            f"{name!r} returned {type(result).__name__}: expected a Dataset, a "
            "mapping of name -> tensor, or a pair (train, val)",
        )

    def arguments(
        self,
        name: str,
        function: Any,
        args: dict[str, Any],
        paths: list[str],
        path: tuple,
    ) -> dict[str, Any]:
        """The call's keyword arguments, checked against its signature first, with
        the path args resolved."""
        kwargs = dict(args)
        for k, arg in enumerate(paths):
            if arg not in args:
                raise self.error(
                    (*path, "paths", k),
                    f"paths: {arg!r} is not one of the args{suggest(arg, list(args))}",
                )
            value = args[arg]
            if isinstance(value, str):
                kwargs[arg] = str(self.resolve(value))
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                kwargs[arg] = [str(self.resolve(v)) for v in value]
            else:
                raise self.error(
                    (*path, "args", arg),
                    f"args.{arg} is listed in paths, so it must be a path or a list "
                    f"of paths, not {type(value).__name__}",
                )
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without one: the call decides
            return kwargs
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            parameters = [
                p.name
                for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            unknown = [a for a in args if a not in signature.parameters]
            hint = suggest(unknown[0], parameters) if unknown else ""
            at = (*path, "args", unknown[0]) if unknown else (*path, "args")
            raise self.error(
                at,
                f"{name!r} cannot take these args: {first_line(exc)}{hint}; it takes "
                f"{', '.join(parameters) or 'no keyword arguments'}",
                key=bool(unknown),
            ) from None
        return kwargs


def _is_data(value: Any) -> bool:
    return isinstance(value, (Dataset, dict)) or (
        hasattr(value, "__getitem__")
        and hasattr(value, "__len__")
        and not isinstance(value, (tuple, list, str))
    )
