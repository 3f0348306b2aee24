"""The allowlist of generated source: what codegen means to write, and nothing else.

:func:`check_generated_source` parses a generated file and walks every node. The
allowed forms are those compiler/codegen.py emits (read off it and the golden files):

- module: a docstring, ``import torch``, ``import torch.nn.functional as F``,
  ``from torch import nn`` (also ``typing``, ``math``, ``__future__``; and modules of
  packages passed as ``allowed_imports``, for ``--allow-import``), then classes;
- a class: ``class Name(nn.Module):`` with a docstring and the methods ``__init__``,
  ``reset_parameters`` and ``forward``;
- statements: assignments to ``self.<path>`` or to a local name (in ``forward`` and
  ``__init__``), ``return``,
  ``for module in (...):`` over submodules, and calls as statements;
- calls: ``nn.<Module subclass>(...)``, ``nn.init.<fn>_(...)``, ``torch.<fn>`` and
  ``F.<fn>`` of torch's tensor functions, classes defined in the file,
  ``super().__init__()``, ``self.<submodule>(...)``, ``self.reset_parameters()``,
  the copies of a repeat, ``nn.Sequential(*(<expr> for _ in range(<expr>)))``,
  ``<module>.requires_grad_(False)``, and the builtins expressions use;
- names: locals defined before their use, arguments, the file's classes and imports,
  and a few builtins; attributes: ``__init__`` of ``super()`` is the only dunder.

A failure is an AssertionError naming the line and the source text of the node.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["check_generated_source"]

_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "typing", "math", "__future__"}
_METHODS = {"__init__", "reset_parameters", "forward"}
# Builtins codegen writes: expression functions, float("inf"), annotations, super().
_BUILTINS = {"min", "max", "abs", "int", "round", "len", "float", "bool", "str"}
_BUILTINS |= {"list", "dict", "tuple", "super"}
_MODULE_METHODS = {"requires_grad_"}
# The variable of an init or freeze loop over submodules: module, module_1, ...
_LOOP_VARIABLE = re.compile(r"module(_[0-9]+)?\Z")
_ANNOTATIONS = {"int", "float", "bool", "str", "list", "dict", "tuple", "object"}
_TORCH_FUNCTIONS = {
    n for n in dir(torch._C._VariableFunctions) if not n.startswith("_")
}
_TORCH_FUNCTIONS |= {n for n in torch.functional.__all__ if not n.startswith("_")}
_F_FUNCTIONS = {
    n for n in dir(F) if not n.startswith("_") and callable(getattr(F, n, None))
}
_NN_MODULES = {
    n
    for n in dir(nn)
    if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), nn.Module)
}
_NN_INIT = {n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")}
_EXPRESSIONS = (
    ast.Constant,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Subscript,
    ast.Name,
    ast.Attribute,
    ast.Call,
)
_OPERATORS = (ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context)


class _Checker:
    def __init__(self, source: str, allowed_imports: Iterable[str]) -> None:
        self.source = source
        self.packages = set(allowed_imports)
        self.imported: set[str] = set()  # names bound by imports: torch, nn, F, pkg
        self.custom: set[str] = set()  # dotted modules of allowed packages
        self.classes: set[str] = set()

    def fail(self, node: ast.AST, why: str) -> AssertionError:
        text = ast.get_source_segment(self.source, node) or ast.dump(node)
        line = getattr(node, "lineno", "?")
        return AssertionError(f"generated source, line {line}: {why}: {text}")

    # -- module and classes -------------------------------------------------------

    def module(self, tree: ast.Module) -> None:
        body = list(tree.body)
        if body and _is_docstring(body[0]):
            body = body[1:]
        self.classes = {n.name for n in body if isinstance(n, ast.ClassDef)}
        for stmt in body:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    self.check_import(stmt, alias.name)
                    bound = alias.asname or alias.name.split(".")[0]
                    if alias.asname is None and self.is_custom(alias.name):
                        self.custom.add(alias.name)
                    self.imported.add(bound)
            elif isinstance(stmt, ast.ImportFrom):
                if stmt.level or stmt.module is None:
                    raise self.fail(stmt, "relative import")
                for alias in stmt.names:
                    self.check_import(stmt, f"{stmt.module}.{alias.name}")
                    self.imported.add(alias.asname or alias.name)
            elif isinstance(stmt, ast.ClassDef):
                self.class_def(stmt)
            else:
                raise self.fail(stmt, f"{type(stmt).__name__} at module level")

    def is_custom(self, module: str) -> bool:
        return module.split(".")[0] in self.packages

    def check_import(self, node: ast.AST, module: str) -> None:
        if module not in _IMPORTS and not self.is_custom(module):
            raise self.fail(node, f"import of {module!r}")

    def class_def(self, node: ast.ClassDef) -> None:
        if node.decorator_list or node.keywords:
            raise self.fail(node, "decorated class or class keywords")
        if [ast.dump(b) for b in node.bases] != [ast.dump(_NN_MODULE)]:
            raise self.fail(node, "a class not derived from nn.Module")
        body = list(node.body)
        if body and _is_docstring(body[0]):
            body = body[1:]
        for stmt in body:
            if not isinstance(stmt, ast.FunctionDef) or stmt.name not in _METHODS:
                raise self.fail(stmt, "not one of the methods codegen writes")
            self.function(stmt)

    # -- functions and statements -------------------------------------------------

    def function(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            raise self.fail(node, "decorated method")
        args = node.args
        if args.vararg or args.kwarg or args.posonlyargs:
            raise self.fail(node, "*args, **kwargs or positional-only arguments")
        every = [*args.args, *args.kwonlyargs]
        if not every or every[0].arg != "self":
            raise self.fail(node, "a method without self")
        local = set()
        for arg in every:
            self.check_identifier(arg, arg.arg)
            if arg.annotation is not None:
                self.annotation(arg.annotation)
            local.add(arg.arg)
        for default in [*args.defaults, *(d for d in args.kw_defaults if d)]:
            self.expression(default, local)
        if node.returns is not None:
            self.annotation(node.returns)
        body = list(node.body)
        if body and _is_docstring(body[0]):
            body = body[1:]
        for stmt in body:
            self.statement(stmt, local, node.name)

    def statement(self, node: ast.stmt, local: set[str], method: str) -> None:
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1:
                raise self.fail(node, "chained assignment")
            self.expression(node.value, local)
            target = node.targets[0]
            if isinstance(target, ast.Name):
                # forward's values; in __init__, a size the layers share
                if method not in ("forward", "__init__"):
                    raise self.fail(node, "a local variable outside forward/__init__")
                self.check_identifier(target, target.id)
                local.add(target.id)
            else:
                self.module_path(target, local, store=True)
        elif isinstance(node, ast.AnnAssign):
            # `name: torch.Tensor = self.head(x)`: the local forward returns, typed.
            if (
                method != "forward"
                or node.value is None
                or not isinstance(node.target, ast.Name)
                or ast.unparse(node.annotation) != "torch.Tensor"
            ):
                raise self.fail(node, "an annotated assignment codegen does not write")
            self.expression(node.value, local)
            self.check_identifier(node.target, node.target.id)
            local.add(node.target.id)
        elif isinstance(node, ast.If) and method == "forward":
            # A conditional node: `if self.downsample is not None:` or
            # `if self.use_res:` around the one statement that computes it.
            test = node.test
            if isinstance(test, ast.Compare) and (
                len(test.ops) == 1
                and isinstance(test.ops[0], ast.IsNot)
                and isinstance(test.comparators[0], ast.Constant)
                and test.comparators[0].value is None
            ):
                test = test.left
            if (
                node.orelse
                or not isinstance(test, ast.Attribute)
                or not isinstance(test.value, ast.Name)
                or test.value.id != "self"
            ):
                raise self.fail(node, "a condition other than an attribute of self")
            self.module_path(test, local)
            if len(node.body) != 1 or not isinstance(
                node.body[0], (ast.Assign, ast.AnnAssign)
            ):
                raise self.fail(node, "a conditional body other than one assignment")
            self.statement(node.body[0], local, method)
        elif isinstance(node, ast.If):
            # `if module.bias is not None:` around an initialiser call.
            test = node.test
            if (
                method != "reset_parameters"
                or node.orelse
                or not isinstance(test, ast.Compare)
                or len(test.ops) != 1
                or not isinstance(test.ops[0], ast.IsNot)
                or not isinstance(test.comparators[0], ast.Constant)
                or test.comparators[0].value is not None
                or not isinstance(test.left, ast.Attribute)
            ):
                raise self.fail(node, "a condition other than `param is not None`")
            self.module_path(test.left, local)
            for stmt in node.body:
                if not isinstance(stmt, ast.Expr):
                    raise self.fail(stmt, "a guarded body other than calls")
                self.statement(stmt, local, method)
        elif isinstance(node, ast.Return):
            if method != "forward" or node.value is None:
                raise self.fail(node, "return outside forward")
            self.expression(node.value, local)
        elif isinstance(node, ast.Expr):
            if not isinstance(node.value, ast.Call):
                raise self.fail(node, "an expression statement that is not a call")
            self.expression(node.value, local)
        elif isinstance(node, ast.For):
            if not (
                isinstance(node.target, ast.Name)
                and _LOOP_VARIABLE.match(node.target.id)
            ):
                raise self.fail(node, "a loop other than over submodules")
            if node.orelse or not isinstance(node.iter, ast.Tuple):
                raise self.fail(node, "a loop other than over a tuple of submodules")
            for item in node.iter.elts:
                self.module_path(item, local)
            inner = {*local, node.target.id}
            for stmt in node.body:
                if not isinstance(stmt, (ast.Expr, ast.If)):
                    raise self.fail(stmt, "a loop body other than calls")
                self.statement(stmt, inner, method)
        else:
            raise self.fail(node, f"{type(node).__name__} statement")

    def module_path(self, node: ast.expr, local: set[str], store: bool = False) -> None:
        """``self.a``, ``self.a[0].b``: a submodule (or attribute) of the model."""
        if isinstance(node, ast.Attribute):
            self.check_identifier(node, node.attr)
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                self.module_path(node.value, local)
            return
        if isinstance(node, ast.Subscript) and not store:
            if (
                not isinstance(node.slice, ast.Constant)
                or type(node.slice.value) is not int
            ):
                raise self.fail(node, "a submodule index that is not an integer")
            self.module_path(node.value, local)
            return
        if isinstance(node, ast.Subscript) and store:
            raise self.fail(node, "assignment to an item")
        if (
            isinstance(node, ast.Name)
            and _LOOP_VARIABLE.match(node.id)
            and node.id in local
        ):
            return
        raise self.fail(node, "not a path to a submodule of self")

    # -- expressions --------------------------------------------------------------

    def annotation(self, node: ast.expr) -> None:
        """``int``, ``int | None``, ``torch.Tensor``, ``tuple[torch.Tensor, ...]``."""
        if isinstance(node, ast.Name) and node.id in _ANNOTATIONS:
            return
        if isinstance(node, ast.Constant) and node.value is None:
            return
        if isinstance(node, ast.Attribute) and ast.unparse(node) == "torch.Tensor":
            return
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            self.annotation(node.left)
            self.annotation(node.right)
            return
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("tuple", "dict", "list")
        ):
            slice_ = node.slice
            items = slice_.elts if isinstance(slice_, ast.Tuple) else [slice_]
            for item in items:
                self.annotation(item)
            return
        raise self.fail(node, "an annotation codegen does not write")

    def expression(self, node: ast.expr, local: set[str]) -> None:
        if not isinstance(node, _EXPRESSIONS):
            raise self.fail(node, f"{type(node).__name__} expression")
        if isinstance(node, ast.Call):
            self.call(node, local)
            return
        if isinstance(node, ast.Name):
            self.name(node, local)
            return
        if isinstance(node, ast.Attribute):
            self.attribute(node, local)
            return
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis:
                raise self.fail(node, "Ellipsis")
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _OPERATORS):
                continue
            if not isinstance(child, ast.expr):
                raise self.fail(node, f"{type(child).__name__} inside an expression")
            self.expression(child, local)

    def copies(self, call: ast.Call, arg: ast.Starred, local: set[str]) -> None:
        """The one starred form: a repeat's copies in ``nn.Sequential``,
        ``*(<expression> for _ in range(<expression>))``."""
        if ast.unparse(call.func) != "nn.Sequential":
            raise self.fail(arg, "*args in a call")
        gen = arg.value
        if not isinstance(gen, ast.GeneratorExp) or len(gen.generators) != 1:
            raise self.fail(arg, "*args in a call")
        loop = gen.generators[0]
        it = loop.iter
        if (
            ast.unparse(loop.target) != "_"
            or loop.ifs
            or loop.is_async
            or not isinstance(it, ast.Call)
            or ast.unparse(it.func) != "range"
            or len(it.args) != 1
            or it.keywords
        ):
            raise self.fail(arg, "a generator other than a repeat's copies")
        self.expression(it.args[0], local)
        self.expression(gen.elt, local)

    def name(self, node: ast.Name, local: set[str]) -> None:
        if node.id.startswith("__"):
            raise self.fail(node, "a dunder name")
        if node.id in local or node.id in self.classes or node.id in {"self"}:
            return
        if node.id in _BUILTINS and node.id != "super":
            return
        raise self.fail(node, f"the name {node.id!r} is not defined by the file")

    def custom_roots(self) -> set[str]:
        return {m.split(".")[0] for m in self.custom}

    def attribute(self, node: ast.Attribute, local: set[str]) -> None:
        """Attribute loads outside calls: ``self.<attr>``, ``self.a[0].b``."""
        if node.attr.startswith("__"):
            raise self.fail(node, "a dunder attribute")
        text = ast.unparse(node)
        if text == "torch.Tensor":
            return
        self.module_path(node, local)

    def call(self, node: ast.Call, local: set[str]) -> None:
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.copies(node, arg, local)
                continue
            self.expression(arg, local)
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.fail(keyword.value, "**kwargs in a call")
            self.check_identifier(keyword.value, keyword.arg)
            self.expression(keyword.value, local)
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in self.classes:
                return
            if func.id in _BUILTINS - {"super", "list", "dict", "tuple", "str"}:
                return
            raise self.fail(node, f"a call of {func.id!r}")
        if not isinstance(func, ast.Attribute):
            raise self.fail(node, "a call of something other than a name or attribute")
        text = ast.unparse(func)
        root, _, rest = text.partition(".")
        if text == "super().__init__":
            if node.args or node.keywords:
                raise self.fail(node, "super().__init__ with arguments")
            return
        if func.attr.startswith("__"):
            raise self.fail(node, "a dunder method")
        if isinstance(func.value, ast.Name) and func.value.id in self.imported:
            module = func.value.id
            if module == "torch" and func.attr in _TORCH_FUNCTIONS:
                return
            if module == "F" and func.attr in _F_FUNCTIONS:
                return
            if module == "nn" and func.attr in _NN_MODULES:
                return
            raise self.fail(node, f"a call of {text!r}")
        if root == "nn" and rest.startswith("init.") and rest[5:] in _NN_INIT:
            return
        if root in self.custom_roots():
            module, _, cls = text.rpartition(".")
            if module in self.custom and cls.isidentifier() and cls[:1].isupper():
                return
            raise self.fail(node, f"a call of {text!r}")
        if func.attr in _MODULE_METHODS:
            if [ast.dump(a) for a in node.args] == [ast.dump(ast.Constant(False))]:
                self.module_path(func.value, local)
                return
            raise self.fail(node, "requires_grad_ other than (False)")
        if text == "self.reset_parameters":
            if node.args or node.keywords:
                raise self.fail(node, "reset_parameters with arguments")
            return
        if isinstance(func.value, ast.Name) and func.value.id == "self":
            self.check_identifier(func, func.attr)
            if func.attr in _METHODS or func.attr in dir(nn.Module):
                raise self.fail(node, f"a call of nn.Module's {func.attr!r}")
            return
        raise self.fail(node, f"a call of {text!r}")

    def check_identifier(self, node: ast.AST, name: str) -> None:
        if not name.isidentifier() or not name.isascii() or name.startswith("__"):
            raise self.fail(node, f"the name {name!r}")


_NN_MODULE = ast.Attribute(ast.Name("nn", ast.Load()), "Module", ast.Load())


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def check_generated_source(source: str, allowed_imports: Iterable[str] = ()) -> None:
    """Fail (AssertionError: line and text of the node) on anything in ``source`` that
    codegen does not intend; ``allowed_imports`` are the packages of custom ops."""
    _Checker(source, allowed_imports).module(ast.parse(source))
