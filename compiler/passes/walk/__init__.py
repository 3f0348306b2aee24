"""The shapes pass's parts, one job a module (the pass itself is ``passes/infer_shapes.py``).

state      the walk's shared state, node errors, the node count
graph      the graph walk: nodes in order, references looked up
elaborate  a node -> its modules and calls: repeats, ``use:``, functions
modules    torch modules (and factories'): built on meta, patched
bind       arguments evaluated and checked; inferred arguments filled in
types      argument types against the op's signature; module-valued arguments
blocks     block instances, walked with symbolic sizes
shapes     output shapes: the op's rule, else the meta device
ctor       constructor code (AST) for the generated ``__init__``
"""
