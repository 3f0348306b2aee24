"""A loaded spec: ``load`` and ``loads`` compile a spec; ``Spec`` builds its model.

The public ``nnspec.Spec`` (nnspec/api.py) is this class with the inspection tools
added (``summary``); the stages below the API, the runtime among them, use this one.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import hashlib
import linecache
import os
import pickle
import sys
import types
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..spec.collector import paused_gc
from ..spec.derive import derive, read_spec_file
from ..spec.errors import SpecError
from ..spec.files import FileRefused, inside, is_zoo, zoo_file
from ..spec.yaml_source import parse_yaml
from .codegen import without_comments
from .pipeline import CompiledModel, compile_document
from .values import TupleValue, Value
from .weights import LoadReport, WeightsError, load_weights

__all__ = ["Spec", "confined", "load", "loads"]

#: The folder ``load`` and ``loads`` confine files to when given no ``root``: set for
#: one command by ``nnspec ... --confine``.
_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nnspec_root", default=None
)


class confined:
    """``with confined(folder):`` every ``load``/``loads`` inside, given no ``root``,
    confines the files it reads to ``folder`` (None: no confinement)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = None if root is None else os.path.abspath(os.fspath(root))

    def __enter__(self) -> None:
        self._token = _ROOT.set(self.root)

    def __exit__(self, *exc: object) -> None:
        _ROOT.reset(self._token)


def _root(root: str | os.PathLike[str] | None) -> str | None:
    if root is None:
        return _ROOT.get()
    return os.path.abspath(os.fspath(root))


class Spec:
    """A validated, compiled spec. Build modules from it, or read its source."""

    def __init__(self, compiled: CompiledModel, root: str | None = None) -> None:
        self.compiled = compiled
        #: The folder the spec's files (bases, weights) must be inside; None: anywhere.
        self.root = root
        self._class: type[torch.nn.Module] | None = None

    @property
    def name(self) -> str:
        """The generated model class's name."""
        return self.compiled.name

    @property
    def path(self) -> str:
        return self.compiled.document.path

    @property
    def params(self) -> dict[str, Any]:
        """The params in effect, overrides applied."""
        return dict(self.compiled.params)

    def source(self, *, comments: bool = True) -> str:
        """The generated Python source: imports only torch (and allowed custom packages).
        ``comments=False``: the same code without the spec-line and shape comments."""
        if comments:
            return self.compiled.source
        return without_comments(self.compiled.source)

    def module_class(self) -> type[torch.nn.Module]:
        """The generated model class, executed in memory (registered with linecache,
        so tracebacks and ``inspect`` show the generated lines)."""
        if self._class is None:
            source = self.source()
            digest = hashlib.sha256(source.encode()).hexdigest()[:12]
            module_name = f"nnspec_generated_{self.name.lower()}_{digest}"
            filename = f"<nnspec:{os.path.basename(self.path)}:{digest}>"
            module = sys.modules.get(module_name)
            if module is None:
                module = types.ModuleType(module_name)
                module.__file__ = filename
                code = compile(source, filename, "exec")
                linecache.cache[filename] = (
                    len(source),
                    None,
                    source.splitlines(keepends=True),
                    filename,
                )
                exec(
                    code, module.__dict__
                )  # the compiler's own output, never spec text
                sys.modules[module_name] = module
                _guard_pickling(module)
            self._class = getattr(module, self.name)
        return self._class

    def build(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
        *,
        strict: bool = True,
    ) -> torch.nn.Module:
        """An instance of the generated class, with the spec's weights loaded.

        With ``device="meta"`` nothing is allocated (and no weights are read).
        ``weights`` (a file or a mapping of tensors) is loaded last, after any weights
        the spec names; ``strict=False`` loads what matches. ``load_reports`` then says
        what each load did.
        """
        with paused_gc():  # see spec/collector.py
            cls = self.module_class()
            if device is None:
                model = cls()
            else:
                with torch.device(device):
                    model = cls()
        self.load_reports: list[LoadReport] = []
        if torch.device(device or "cpu").type != "meta":
            for module_path, spec_weights, where in self.compiled.weights:
                self.load_reports.append(
                    self._load_spec_weights(model, module_path, spec_weights, where)
                )
            if weights is not None:
                self.load_reports.append(load_weights(model, weights, strict=strict))
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model

    def _load_spec_weights(
        self, model: torch.nn.Module, module_path: str, spec_weights: Any, where: tuple
    ) -> LoadReport:
        document = self.compiled.document
        file = document.origin(where)[0]
        path = os.path.join(os.path.dirname(file), spec_weights.path)
        target = model.get_submodule(module_path) if module_path else model
        if self.root is not None and not inside(path, self.root):
            raise document.error(
                where,
                f"the weights file {path} is outside {self.root}, the folder specs "
                "are confined to",
                key=True,
            )
        try:
            report = load_weights(
                target, path, prefix=spec_weights.prefix, strict=spec_weights.strict
            )
        except WeightsError as exc:
            raise document.error(where, str(exc), key=True) from None
        if not report.complete:
            warnings.warn(
                f"{file}: weights {spec_weights.path}: {report}", stacklevel=3
            )
        return report

    def named_outputs(self) -> list[tuple[str, Value]]:
        """What forward returns, in order, by name: a dict's keys, or the names of the
        references (``head``, ``lstm.0``) for a tuple or a single tensor."""
        model = self.compiled.model
        value = self.compiled.result.output_value
        if isinstance(value, dict):
            return list(value.items())
        names = [str(ref) for ref in model.outputs.refs]
        if model.outputs.kind == "tuple":
            assert isinstance(value, TupleValue)  # a tuple output's value
            return list(zip(names, value.items))
        return [(names[0], value)]

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the generated source to ``path``."""
        target = Path(path)
        target.write_text(self.source(), encoding="utf-8")
        return target

    def __repr__(self) -> str:
        return f"<nnspec.Spec {self.name} from {self.path}>"


def _refuse_pickle(self: torch.nn.Module, protocol: int) -> Any:
    name = type(self).__name__
    raise pickle.PicklingError(
        f"cannot pickle a whole {name} built by nnspec.load: its class is compiled in "
        "memory and exists only in this process, so the pickle would not load in "
        f"another. Save the weights instead (torch.save(model.state_dict(), path), then "
        "nnspec.load(spec).build(weights=path)), or write the class to a file "
        "(compile-model, or spec.write(path)) and build the model from that module"
    )


def _copy(self: torch.nn.Module) -> torch.nn.Module:
    """copy.copy as for any module (pickling is refused, copying is not)."""
    cls = type(self)
    new = cls.__new__(cls)
    new.__setstate__(self.__getstate__())
    return new


def _deepcopy(self: torch.nn.Module, memo: dict[int, Any]) -> torch.nn.Module:
    """copy.deepcopy as for any module."""
    cls = type(self)
    new = cls.__new__(cls)
    memo[id(self)] = new
    new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
    return new


def _guard_pickling(module: types.ModuleType) -> None:
    """Make pickling an instance of the in-memory module's classes fail at once, with
    advice, rather than write a file no other process can load (``ModuleNotFoundError:
    nnspec_generated_...``). Files written by compile-model are plain modules and
    pickle as usual; only these classes get the guard."""
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, torch.nn.Module)
            and value.__module__ == module.__name__
        ):
            value.__reduce_ex__ = _refuse_pickle  # type: ignore[assignment,method-assign]
            value.__copy__ = _copy  # type: ignore[attr-defined]
            value.__deepcopy__ = _deepcopy  # type: ignore[attr-defined]


def loads(
    text: str,
    params: Mapping[str, Any] | None = None,
    *,
    path: str = "<string>",
    allow_imports: Iterable[str] | None = (),
    root: str | os.PathLike[str] | None = None,
) -> Spec:
    """Parse, validate and compile a spec from YAML text (as ``nnspec.loads``)."""
    folder = _root(root)
    read = functools.partial(read_spec_file, root=folder)
    document = derive(parse_yaml(text, path), read)
    return Spec(compile_document(document, params, _packages(allow_imports)), folder)


def load(
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    allow_imports: Iterable[str] | None = (),
    root: str | os.PathLike[str] | None = None,
) -> Spec:
    """Parse, validate and compile a spec file (as ``nnspec.load``); ``zoo:NAME`` is
    the zoo's spec of that name, read wherever ``root`` is (it is package data)."""
    folder = _root(root)
    read = functools.partial(read_spec_file, root=folder)
    name = os.fspath(path)
    if is_zoo(name):
        try:
            first = read_spec_file(zoo_file(name))
        except FileRefused as exc:
            raise SpecError(str(exc), path=name, line=0, column=0) from None
    else:
        first = read(name)
    document = derive(first, read)
    return Spec(compile_document(document, params, _packages(allow_imports)), folder)


def _packages(allow_imports: Iterable[str] | None) -> tuple[str, ...]:
    """The allowed packages as a tuple; a single string is one package, not letters."""
    if allow_imports is None:
        return ()
    if isinstance(allow_imports, str):
        return (allow_imports,)
    return tuple(allow_imports)


def importable_beside(spec: str) -> None:
    """Let allowed imports (``--allow-import``) find a module beside the spec, as
    ``python -m`` lets them find one in the working directory. The folder goes last
    on the path: it never hides an installed module or the standard library."""
    folder = os.path.abspath(os.path.dirname(spec) or ".")
    if folder not in (os.path.abspath(p or ".") for p in sys.path):
        sys.path.append(folder)
