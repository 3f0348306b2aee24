"""nnspec.inspection: the tools that show a compiled model.

This package holds the summary (one forward pass on the meta device, followed node by
node: shapes, parameters, FLOPs, activation memory), its text table, the pictures of
the graph (Graphviz DOT, Mermaid, and the svg/png/pdf that Graphviz draws) and the
profiler of training steps (torch.profiler traces, step time, MFU). It sits above the
compiler and below the command line: it may import ``nnspec.spec``, the compiler's
public results (the ``CompiledModel``, its class IR and values) and torch, and never
``nnspec.runtime``, ``nnspec.api`` or ``nnspec.cli``; the API and the commands import
it, not the other way round. Whatever it needs of a loaded spec it takes as a
parameter (see ``profile.ProfiledSpec``).
"""
