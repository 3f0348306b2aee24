"""The Python API: ``nnspec.load``, ``nnspec.loads`` and ``Spec``."""

from __future__ import annotations

import hashlib
import linecache
import os
import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .compiler import CompiledModel, compile_document
from .compiler.summary import ModelSummary, summarize
from .spec import SpecError, parse_yaml

__all__ = ["Spec", "load", "loads"]


class Spec:
    """A validated, compiled spec. Build modules from it, or read its source."""

    def __init__(self, compiled: CompiledModel) -> None:
        self.compiled = compiled
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

    def source(self) -> str:
        """The generated Python source: imports only torch (and allowed custom packages)."""
        return self.compiled.source

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
            self._class = getattr(module, self.name)
        return self._class

    def build(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.nn.Module:
        """An instance of the generated class. With ``device="meta"`` nothing is allocated."""
        cls = self.module_class()
        if device is None:
            model = cls()
        else:
            with torch.device(device):
                model = cls()
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model

    def summary(self, dtype: torch.dtype | None = None) -> ModelSummary:
        """Rows per node (shape, parameters, FLOPs) and totals, from one forward pass on
        the meta device: nothing is allocated. ``dtype`` builds the parameters in it."""
        return summarize(self.compiled, self.build(device="meta", dtype=dtype))

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the generated source to ``path``."""
        target = Path(path)
        target.write_text(self.source(), encoding="utf-8")
        return target

    def __repr__(self) -> str:
        return f"<nnspec.Spec {self.name} from {self.path}>"


def loads(
    text: str,
    params: Mapping[str, Any] | None = None,
    *,
    path: str = "<string>",
    allow_imports: Iterable[str] = (),
) -> Spec:
    """Parse, validate and compile a spec from YAML text. Raises SpecError."""
    document = parse_yaml(text, path)
    return Spec(compile_document(document, params, allow_imports))


def load(
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    allow_imports: Iterable[str] = (),
) -> Spec:
    """Parse, validate and compile a spec file. Raises SpecError."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"no such spec file: {name}", path=name, line=0, column=0
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"cannot read the spec: {exc}", path=name, line=0, column=0
        ) from None
    return loads(text, params, path=name, allow_imports=allow_imports)
