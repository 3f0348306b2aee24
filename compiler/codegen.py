"""Pass: classes -> Python source. One small emitter per part of a class."""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize

from .codegen_hoist import Hoisted, hoist
from .codegen_locals import forward_locals, localised
from .graph import Call, ClassIR, CtorParam, InitStatement, Ref
from .ir import ModuleDef
from .names import Namespace
from .pyformat import (
    LINE_LENGTH,
    GeneratedSourceError,
    expr,
    source_text,
    statement,
)
from .values import TupleValue, Value

__all__ = [
    "GeneratedSourceError",
    "check_source",
    "generate_source",
    "module_access",
    "without_comments",
]


# Parameters torch's layers declare Optional (a Linear without bias has None).
_OPTIONAL_PARAMS = frozenset({"bias"})


def _sizes_as_tuples(call: ast.expr) -> ast.expr:
    """A constructor call with its list literals written as tuples, as torch's own
    signatures type sizes (``output_size=(6, 6)``): the generated file type-checks."""

    class _Tuples(ast.NodeTransformer):
        def visit_List(self, node: ast.List) -> ast.AST:
            self.generic_visit(node)
            return ast.Tuple(node.elts, ast.Load())

        def visit_Call(self, node: ast.Call) -> ast.AST:
            # A seq's keyed children: OrderedDict([(key, module), ...]), as written.
            if (
                isinstance(node.func, ast.Name)
                and node.func.id == "OrderedDict"
                and len(node.args) == 1
                and isinstance(node.args[0], ast.List)
            ):
                items = [self.visit(e) for e in node.args[0].elts]
                return ast.Call(node.func, [ast.List(items, ast.Load())], [])
            self.generic_visit(node)
            return node

    if not isinstance(call, ast.Call):
        return call
    converted = _Tuples()
    if (
        isinstance(call.func, ast.Attribute)
        and call.func.attr == "ModuleList"
        and call.args
        and isinstance(call.args[0], ast.List)
    ):  # nn.ModuleList([...]) keeps its list; the copies' sizes are tuples
        copies = [_sizes_as_tuples(c) for c in call.args[0].elts]
        return ast.Call(call.func, [ast.List(copies, ast.Load())], [])
    return ast.Call(
        call.func,
        [converted.visit(a) for a in call.args],
        [ast.keyword(k.arg, converted.visit(k.value)) for k in call.keywords],
    )


def _register_buffer(module: ModuleDef) -> ast.expr:
    """``self.register_buffer("mask", torch.ones(...), persistent=False)``."""
    keywords = (
        [] if module.persistent else [ast.keyword("persistent", ast.Constant(False))]
    )
    return ast.Call(
        ast.Name("self.register_buffer", ast.Load()),
        [ast.Constant(module.name), _sizes_as_tuples(module.ctor)],
        keywords,
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


def _shape_comment(value: Value | None, sizes: Hoisted | None) -> str:
    """``(B, 64, 32, 32)``; in a block (``sizes`` given), in the terms of its
    constructor: ``(B, mid, in_height, in_width)``."""
    if value is None:
        return "None"
    if isinstance(value, TupleValue):
        return "(" + ", ".join(_shape_comment(v, sizes) for v in value.items) + ")"
    dims = []
    for k, n in enumerate(value.shape):
        if k == value.batch_dim:
            dims.append("B")
        elif sizes is None:
            dims.append(str(n))
        else:
            sym = value.sym[k]
            dims.append(expr(sizes.rewrite(sym)) if sym is not None else "?")
    if len(dims) == 1:
        return f"({dims[0]},)"
    return "(" + ", ".join(dims) + ")"


class _ClassWriter:
    def __init__(
        self, cls: ClassIR, spec_file: str, symbolic: bool, reserved: set[str]
    ) -> None:
        self.cls = cls
        self.spec_file = spec_file
        self.symbolic = symbolic
        self.reserved = reserved  # names of the file: imports and classes
        self.lines: list[str] = []
        found = forward_locals(cls)
        self.var = found.names
        for module in cls.modules:  # a bare tensor is read where it is held
            if module.tensor is not None:
                self.var[module.name] = f"self.{module.name}"
        self.returned = found.returned
        self.loops = found.loops

    def ref(self, ref: Ref) -> str:
        text = self.var.get(ref.name, ref.name)
        for k in ref.index:
            text += f"[{k}]"
        return text

    # -- emitters ---------------------------------------------------------------

    def write(self) -> list[str]:
        cls = self.cls
        self.lines.append(f"class {cls.name}(nn.Module):")
        doc = _class_doc(cls)
        if doc:
            self.lines += _docstring(doc, 1)
            self.lines.append("")
        # A buffer's type, as torch's own layers declare theirs (registered, it is
        # not an assignment a type checker sees).
        buffers = [m.name for m in cls.modules if m.tensor == "buffer"]
        self.lines += [f"    {name}: torch.Tensor" for name in buffers]
        if buffers:
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
        self.lines.append("        super().__init__()")
        targets: list[str | None] = []
        exprs: list[ast.expr] = []
        for module in self.cls.modules:
            if module.tensor == "buffer":
                targets.append(None)
                exprs.append(_register_buffer(module))
                continue
            targets.append(f"self.{module.name}")
            ctor = _sizes_as_tuples(module.ctor)
            if module.condition is not None:  # ``when:``, as torchvision writes it
                ctor = ast.IfExp(module.condition, ctor, ast.Constant(None))
            exprs.append(ctor)
            for path, ctor in module.patches:
                targets.append(module_access(f"{module.name}.{path}"))
                exprs.append(ctor)
        for name, value in self.cls.attributes:
            targets.append(f"self.{name}")
            exprs.append(value)
        # A size the layers share is computed once, as a person writes it.
        # The model's class writes its params' expressions where they are used,
        # as its spec does (``base * 2``).
        annotations = {p.name: p.annotation for p in self.cls.params}
        shared = hoist(exprs, annotations if self.symbolic else {}, self.reserved)
        self.sizes = shared
        for name, value in shared.locals:
            self.lines += statement(f"{name} = ", value, 2)
        for target, value in zip(targets, shared.exprs):
            self.lines += statement("" if target is None else f"{target} = ", value, 2)
        if self.cls.init:
            self.lines.append("        self.reset_parameters()")
        if self.cls.ties:
            self.lines.append("        # Tied by the spec: one parameter, two names.")
        for path, source in self.cls.ties:
            self.lines.append(
                f"        {module_access(path)} = {module_access(source)}"
            )
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
            tensor = f"{target}.{param}" if param else target  # '': a bare tensor
            call = ast.Call(
                ast.Name(f"nn.init.{fn}_", ast.Load()),
                [ast.Name(tensor, ast.Load()), *args],
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
        if len(line) <= LINE_LENGTH:
            self.lines.append(line)
        else:
            self.lines.append("    def forward(")
            parts = ["self", *(f"{name}: torch.Tensor" for name in cls.inputs)]
            inner = "        " + ", ".join(parts)
            if len(inner) <= LINE_LENGTH:
                self.lines.append(inner)
            else:
                self.lines += [f"        {p}," for p in parts]
            self.lines.append(f"    ) -> {returns}:")
        # A module call returns Any to a type checker: a local the forward returns
        # is declared a tensor where it is assigned.
        self.declare: set[str] = set()
        if cls.outputs.kind == "single" and self.returned is None:
            returned = self.ref(cls.outputs.refs[0])
            if returned not in cls.inputs:
                self.declare.add(returned)
        for j, call in enumerate(cls.calls):
            if j != self.returned:
                self.emit_call(call)
        self.emit_return()

    def comment(self, call: Call) -> str:
        """Where the node is written and the shape of its value."""
        shape = _shape_comment(call.value, self.sizes if self.symbolic else None)
        return source_text(f"{call.file or self.spec_file}:{call.line}  {shape}")

    def emit(
        self,
        head: str,
        node: ast.expr,
        comment: str | None = None,
        tail: str = "",
        depth: int = 2,
    ) -> None:
        """A statement of forward, its comment at the end of its line where it fits
        there, else on the line above."""
        lines = statement(head, node, depth, tail=tail)
        if comment is None:
            self.lines += lines
        elif len(lines) == 1 and len(lines[0]) + len(comment) + 4 <= LINE_LENGTH:
            self.lines.append(f"{lines[0]}  # {comment}")
        else:
            self.lines.append(f"{'    ' * depth}# {comment}")
            self.lines += lines

    def call_expr(self, call: Call) -> ast.expr:
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
        extra = [localised(a, self.var) for a in call.args]
        args = extra[: call.leading] + args + extra[call.leading :]
        keywords += [ast.keyword(k, localised(v, self.var)) for k, v in call.kwargs]
        return ast.Call(ast.Name(call.callee, ast.Load()), args, keywords)

    def target(self, var: str) -> str:
        if var in self.declare:
            self.declare.discard(var)
            return f"{var}: torch.Tensor = "
        return f"{var} = "

    def emit_loop(self, call: Call, var: str) -> None:
        """A repeat with side inputs: ``for layer in self.layer: x = layer(x, mask)``,
        the chained value first put in the local the loop carries."""
        assert isinstance(call.inputs, list)
        first, *side = call.inputs
        if self.ref(first) != var:
            self.lines += statement(self.target(var), ast.Name(self.ref(first)), 2)
        copy = self.loops[call.node]
        self.emit(f"for {copy} in ", ast.Name(call.callee), self.comment(call), ":")
        args: list[ast.expr] = [ast.Name(var), *(ast.Name(self.ref(r)) for r in side)]
        self.lines += statement(f"{var} = ", ast.Call(ast.Name(copy), args, []), 3)

    def emit_call(self, call: Call) -> None:
        var = self.var[call.node]
        if call.loop:
            self.emit_loop(call, var)
            return
        if call.condition is None:
            self.emit(self.target(var), self.call_expr(call), self.comment(call))
            return
        # A conditional node (``when:``): its first input passes through unless
        # the class built it.
        refs = list(
            call.inputs.values() if isinstance(call.inputs, dict) else call.inputs
        )
        passed = self.ref(refs[0])
        if passed != var:
            self.emit(self.target(var), ast.Name(passed, ast.Load()))
        self.lines += statement("if ", call.condition, 2, tail=":")
        self.emit(self.target(var), self.call_expr(call), self.comment(call), depth=3)

    def returned_value(self, ref: Ref) -> ast.expr:
        """A returned reference; the last call itself where only the return uses it."""
        if self.returned is None or ref.name != self.cls.calls[self.returned].node:
            return ast.Name(self.ref(ref), ast.Load())
        node: ast.expr = self.call_expr(self.cls.calls[self.returned])
        for k in ref.index:
            node = ast.Subscript(node, ast.Constant(k), ast.Load())
        return node

    def emit_return(self) -> None:
        out = self.cls.outputs
        names = [self.returned_value(r) for r in out.refs]
        comment = None
        if self.returned is not None:
            comment = self.comment(self.cls.calls[self.returned])
        if out.kind == "single":
            node: ast.expr = names[0]
        elif out.kind == "tuple":
            node = ast.Tuple(names, ast.Load())
        else:
            node = ast.Dict([ast.Constant(k) for k in out.keys], list(names))
        text = expr(node)
        if out.kind == "tuple" and len(names) > 1:
            text = text[1:-1] if text.startswith("(") else text
            self.emit("return ", ast.Name(text, ast.Load()), comment)
        else:
            self.emit("return ", node, comment)


def _class_doc(cls: ClassIR) -> str:
    """The spec's doc of the class, and of each documented constructor parameter."""
    doc = (cls.doc or "").strip()
    documented = [p for p in cls.params if p.doc and p.doc.strip()]
    if not documented:
        return doc
    args = ["Args:"] + [
        f"    {p.name}: {' '.join((p.doc or '').split())}" for p in documented
    ]
    return "\n\n".join([*([doc] if doc else []), "\n".join(args)])


#: Lets a forward return a module's call directly (``return self.fc(x)``) under
#: ``mypy --strict``: ``nn.Module.__call__`` returns Any.
MYPY_DIRECTIVE = '# mypy: disable-error-code="no-any-return"'


def generate_source(
    model: ClassIR, blocks: list[ClassIR], spec_file: str, imports: list[str]
) -> str:
    """The whole generated file."""
    reserved = {c.name for c in [*blocks, model]} | {m.split(".")[0] for m in imports}
    body: list[str] = []
    direct = False
    for cls in [*blocks, model]:
        if body:
            body += ["", ""]
        writer = _ClassWriter(cls, spec_file, cls is not model, reserved)
        body += writer.write()
        direct = direct or (
            writer.returned is not None and cls.outputs.kind == "single"
        )
    text = "\n".join(body)
    header = _docstring(
        f"{model.name}: PyTorch source compiled by nnspec from {spec_file}.\n\n"
        "Edit the spec and compile it again rather than editing this file.",
        0,
    )
    if direct:
        header = [MYPY_DIRECTIVE, *header]
    import_lines = ["import torch"]
    if "F." in text:
        import_lines.append("import torch.nn.functional as F")
    import_lines += [f"import {m}" for m in sorted(set(imports))]
    import_lines = sorted(import_lines, key=lambda s: s.split()[1].lower())
    if "OrderedDict(" in text:
        import_lines.insert(0, "from collections import OrderedDict")
        import_lines.insert(1, "")
    import_lines.append("from torch import nn")
    return check_source("\n".join([*header, "", *import_lines, "", "", text, ""]))


def without_comments(source: str) -> str:
    """Generated ``source`` without its comments (the spec lines and shapes, notes);
    the code is the same, token for token. The mypy directive stays: it is
    configuration, not a comment for the reader."""
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT or token.string == MYPY_DIRECTIVE:
            continue
        row, col = token.start
        line = lines[row - 1]
        if line[:col].strip():
            lines[row - 1] = line[:col].rstrip() + "\n"
        else:
            drop.add(row - 1)
    return check_source("".join(t for i, t in enumerate(lines) if i not in drop))


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
