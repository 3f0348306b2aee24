"""Pass: classes -> Python source. One small emitter per part of a class."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable

from .graph import Call, ClassIR, CtorParam, InitStatement, Ref
from .names import Namespace
from .pyformat import (
    LINE_LENGTH,
    GeneratedSourceError,
    expr,
    source_text,
    statement,
)
from .values import TupleValue, Value

__all__ = ["GeneratedSourceError", "check_source", "generate_source", "module_access"]


# Parameters torch's layers declare Optional (a Linear without bias has None).
_OPTIONAL_PARAMS = frozenset({"bias"})


def _sizes_as_tuples(call: ast.expr) -> ast.expr:
    """A constructor call with its list literals written as tuples, as torch's own
    signatures type sizes (``output_size=(6, 6)``): the generated file type-checks."""

    class _Tuples(ast.NodeTransformer):
        def visit_List(self, node: ast.List) -> ast.AST:
            self.generic_visit(node)
            return ast.Tuple(node.elts, ast.Load())

    if not isinstance(call, ast.Call):
        return call
    converted = _Tuples()
    return ast.Call(
        call.func,
        [converted.visit(a) for a in call.args],
        [ast.keyword(k.arg, converted.visit(k.value)) for k in call.keywords],
    )


def module_access(path: str, root: str = "self") -> str:
    """'layer1.0.conv1' -> 'self.layer1[0].conv1'."""
    text = root
    for part in path.split("."):
        text += f"[{part}]" if part.isdigit() else f".{part}"
    return text


def _wrap(line: str, width: int) -> list[str]:
    """``line`` split at spaces into lines of at most ``width`` characters where it can be;
    continuation lines keep the line's own indentation."""
    if len(line) <= width:
        return [line]
    lead = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(
        line[len(lead) :],
        width=width,
        initial_indent=lead,
        subsequent_indent=lead,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [line]


def _docstring(text: str, depth: int) -> list[str]:
    indent = "    " * depth
    body = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    body = source_text(body, newlines=True)
    lines = [line.rstrip() for line in body.splitlines()]
    if len(lines) > 1 or len(indent) + len(lines[0]) + 6 > LINE_LENGTH:
        # Wrap, leaving room for both quotes on the first line: ruff's formatter puts
        # the closing quotes back on a docstring's only line.
        width = LINE_LENGTH - len(indent)
        first, *rest = lines
        lines = _wrap(first, width - 6)
        for line in rest:
            lines += _wrap(line, width)
    if len(lines) == 1:
        last = " " if body.endswith('"') else ""  # not four quotes in a row
        return [f'{indent}"""{lines[0]}{last}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _shape_comment(value: Value | None, symbolic: bool) -> str:
    if value is None:
        return "None"
    if isinstance(value, TupleValue):
        return "(" + ", ".join(_shape_comment(v, symbolic) for v in value.items) + ")"
    dims = []
    for k, n in enumerate(value.shape):
        if k == value.batch_dim:
            dims.append("B")
        elif not symbolic:
            dims.append(str(n))
        else:
            sym = value.sym[k]
            dims.append(expr(sym) if sym is not None else "?")
    if len(dims) == 1:
        return f"({dims[0]},)"
    return "(" + ", ".join(dims) + ")"


class _ClassWriter:
    def __init__(self, cls: ClassIR, spec_file: str, symbolic: bool) -> None:
        self.cls = cls
        self.spec_file = spec_file
        self.symbolic = symbolic
        self.lines: list[str] = []
        self.var = self.variable_names()

    # -- variables: values used once, by the next statement, share one name ------

    def variable_names(self) -> dict[str, str]:
        calls = self.cls.calls
        uses: dict[str, list[int]] = {}
        for j, call in enumerate(calls):
            refs = (
                call.inputs.values() if isinstance(call.inputs, dict) else call.inputs
            )
            for ref in refs:
                uses.setdefault(ref.name, []).append(j)
        outputs = {ref.name for ref in self.cls.outputs.refs}
        for ref in self.cls.outputs.refs:
            uses.setdefault(ref.name, []).append(len(calls))
        taken = set(self.cls.inputs) | {c.node for c in calls}
        first_input = self.cls.inputs[0] if self.cls.inputs else None
        first_dies = first_input is not None and uses.get(first_input) == [0]
        if "x" not in taken or (first_input == "x" and first_dies):
            chain = "x"
        elif first_dies and first_input is not None:
            chain = first_input
        else:
            chain = Namespace(taken).fresh("h")
        names = {name: name for name in self.cls.inputs}
        for j, call in enumerate(calls):
            temp = (
                uses.get(call.node) == [j + 1]
                and call.node not in outputs
                and j + 1 < len(calls)
            )
            names[call.node] = chain if temp else call.node
        return names

    def ref(self, ref: Ref) -> str:
        text = self.var.get(ref.name, ref.name)
        for k in ref.index:
            text += f"[{k}]"
        return text

    # -- emitters ---------------------------------------------------------------

    def write(self) -> list[str]:
        cls = self.cls
        self.lines.append(f"class {cls.name}(nn.Module):")
        doc = (cls.doc or "").strip() or f"{cls.name}, compiled from {self.spec_file}."
        self.lines += _docstring(doc, 1)
        self.lines.append("")
        self.emit_init()
        if cls.init:
            self.lines.append("")
            self.emit_reset()
        self.lines.append("")
        self.emit_forward()
        return self.lines

    def emit_init(self) -> None:
        params = self.cls.params
        head = "def __init__(self"
        if params:
            parts = ["self", "*", *(self.param_text(p) for p in params)]
            line = f"    def __init__({', '.join(parts)}) -> None:"
            if len(line) <= 88:
                self.lines.append(line)
            else:
                inner = "        " + ", ".join(parts)
                if len(inner) <= 88:
                    self.lines += ["    def __init__(", inner, "    ) -> None:"]
                else:
                    self.lines.append("    def __init__(")
                    self.lines += [f"        {p}," for p in parts]
                    self.lines.append("    ) -> None:")
        else:
            self.lines.append(f"    {head}) -> None:")
        body = ["super().__init__()"]
        self.lines.append("        " + body[0])
        for module in self.cls.modules:
            self.lines += statement(
                f"self.{module.name} = ", _sizes_as_tuples(module.ctor), 2
            )
            for path, ctor in module.patches:
                target = module_access(f"{module.name}.{path}")
                self.lines += statement(f"{target} = ", ctor, 2)
        for name, value in self.attributes():
            self.lines += statement(f"self.{name} = ", value, 2)
        if self.cls.init:
            self.lines.append("        self.reset_parameters()")
        if self.cls.freeze:
            self.lines.append(
                "        # Frozen by the spec: these parameters do not train."
            )
            paths: list[ast.expr] = [
                ast.Name(module_access(p), ast.Load()) for p in self.cls.freeze
            ]
            if len(paths) == 1:
                self.lines.append(f"        {expr(paths[0])}.requires_grad_(False)")
            else:
                self.lines += statement(
                    "for module in ", ast.Tuple(paths, ast.Load()), 2, tail=":"
                )
                self.lines.append("            module.requires_grad_(False)")

    def attributes(self) -> list[tuple[str, ast.expr]]:
        return self.cls.attributes

    @staticmethod
    def param_text(param: CtorParam) -> str:
        text = f"{param.name}: {param.annotation}"
        if param.default is not None:
            text += f" = {expr(param.default)}"
        return text

    def emit_reset(self) -> None:
        self.lines.append("    def reset_parameters(self) -> None:")
        self.lines.append(
            '        """Initialise parameters by the spec\'s init rules."""'
        )
        loops = Namespace()  # one loop variable per loop: each has its module type
        for stmt in self.cls.init:
            self.emit_init_statement(stmt, loops)

    def emit_init_statement(self, stmt: InitStatement, loops: Namespace) -> None:
        if len(stmt.modules) == 1:
            target, depth = module_access(stmt.modules[0]), 2
        else:
            paths: list[ast.expr] = [
                ast.Name(module_access(p), ast.Load()) for p in stmt.modules
            ]
            target, depth = loops.fresh("module"), 3
            self.lines += statement(
                f"for {target} in ", ast.Tuple(paths, ast.Load()), 2, tail=":"
            )
        for param, fn, args, kwargs in stmt.calls:
            call = ast.Call(
                ast.Name(f"nn.init.{fn}_", ast.Load()),
                [ast.Name(f"{target}.{param}", ast.Load()), *args],
                [ast.keyword(k, v) for k, v in kwargs],
            )
            if param in _OPTIONAL_PARAMS:
                # torch types these Optional; every matched module has one (checked
                # when the spec was compiled), so the test only tells a type checker.
                self.lines.append(f"{'    ' * depth}if {target}.{param} is not None:")
                self.lines += statement("", call, depth + 1)
            else:
                self.lines += statement("", call, depth)

    def emit_forward(self) -> None:
        cls = self.cls
        params = ", ".join(["self", *(f"{name}: torch.Tensor" for name in cls.inputs)])
        returns = {
            "single": "torch.Tensor",
            "tuple": "tuple["
            + ", ".join("torch.Tensor" for _ in cls.outputs.refs)
            + "]",
            "dict": "dict[str, torch.Tensor]",
        }[cls.outputs.kind]
        line = f"    def forward({params}) -> {returns}:"
        if len(line) <= 88:
            self.lines.append(line)
        else:
            self.lines.append("    def forward(")
            parts = ["self", *(f"{name}: torch.Tensor" for name in cls.inputs)]
            inner = "        " + ", ".join(parts)
            if len(inner) <= 88:
                self.lines.append(inner)
            else:
                self.lines += [f"        {p}," for p in parts]
            self.lines.append(f"    ) -> {returns}:")
        # A module call returns Any to a type checker: the local the forward returns
        # is declared a tensor where it is first assigned.
        self.declare: set[str] = set()
        if cls.outputs.kind == "single":
            returned = self.ref(cls.outputs.refs[0])
            if returned not in cls.inputs:
                self.declare.add(returned)
        for call in cls.calls:
            self.emit_call(call)
        self.emit_return()

    def emit_call(self, call: Call) -> None:
        shape = _shape_comment(call.value, self.symbolic)
        where = f"{call.file or self.spec_file}:{call.line}  {shape}"
        self.lines.append(f"        # {source_text(where)}")
        if isinstance(call.inputs, dict):
            args: list[ast.expr] = []
            keywords = [
                ast.keyword(k, ast.Name(self.ref(r), ast.Load()))
                for k, r in call.inputs.items()
            ]
        else:
            values: list[ast.expr] = [
                ast.Name(self.ref(r), ast.Load()) for r in call.inputs
            ]
            args = [ast.List(values, ast.Load())] if call.sequence else values
            keywords = []
        args += call.args
        keywords += [ast.keyword(k, v) for k, v in call.kwargs]
        node = ast.Call(ast.Name(call.callee, ast.Load()), args, keywords)
        var = self.var[call.node]
        if var in self.declare:
            self.declare.discard(var)
            self.lines += statement(f"{var}: torch.Tensor = ", node, 2)
        else:
            self.lines += statement(f"{var} = ", node, 2)

    def emit_return(self) -> None:
        out = self.cls.outputs
        names: list[ast.expr] = [ast.Name(self.ref(r), ast.Load()) for r in out.refs]
        if out.kind == "single":
            node: ast.expr = names[0]
        elif out.kind == "tuple":
            node = ast.Tuple(names, ast.Load())
        else:
            node = ast.Dict([ast.Constant(k) for k in out.keys], list(names))
        text = expr(node)
        if out.kind == "tuple" and len(names) > 1:
            text = text[1:-1] if text.startswith("(") else text
            self.lines += statement("return ", ast.Name(text, ast.Load()), 2)
        else:
            self.lines += statement("return ", node, 2)


def generate_source(
    model: ClassIR,
    blocks: list[ClassIR],
    spec_file: str,
    imports: list[str],
    uses_functional: Callable[[], bool] | None = None,
) -> str:
    """The whole generated file."""
    body: list[str] = []
    for cls in [*blocks, model]:
        if body:
            body += ["", ""]
        body += _ClassWriter(cls, spec_file, symbolic=cls is not model).write()
    text = "\n".join(body)
    header = _docstring(
        f"{model.name}: PyTorch source compiled by nnspec from {spec_file}.\n\n"
        "Edit the spec and compile it again rather than editing this file.",
        0,
    )
    import_lines = ["import torch"]
    if "F." in text:
        import_lines.append("import torch.nn.functional as F")
    import_lines += [f"import {m}" for m in sorted(set(imports))]
    import_lines = sorted(import_lines, key=lambda s: s.split()[1].lower())
    import_lines.append("from torch import nn")
    return check_source("\n".join([*header, "", *import_lines, "", "", text, ""]))


def check_source(source: str) -> str:
    """``source`` if Python parses it; else GeneratedSourceError (a bug of the compiler:
    the spec's mistakes are refused before code is generated). Nothing is written or
    run before this check."""
    try:
        ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        if getattr(exc, "lineno", None):
            reason = f"line {exc.lineno}: {reason}"  # type: ignore[union-attr]
        raise GeneratedSourceError(
            f"the generated source does not compile ({reason})"
        ) from None
    return source
