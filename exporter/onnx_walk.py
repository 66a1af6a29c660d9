"""Walking an ONNX graph the same way everywhere: subgraphs (If/Loop/Scan bodies), the
recurrent nodes at any depth, and a node's attribute by name."""
from __future__ import annotations

from typing import Any, Iterator

import onnx
from onnx import helper

from .cells import ONNX_OPS

__all__ = ["subgraphs", "recurrent_nodes", "attribute", "ancestors", "descendants", "SHAPE_ONLY"]


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node holds: a GRAPH attribute's one, a GRAPHS attribute's many."""
    return [g for a in node.attribute
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))]


def recurrent_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every RNN / LSTM / GRU node, in subgraphs too."""
    for node in graph.node:
        if node.op_type in ONNX_OPS:
            yield node
        for g in subgraphs(node):
            yield from recurrent_nodes(g)


def attribute(node: onnx.NodeProto, name: str) -> Any:
    """The attribute's value (strings as bytes, as onnx returns them), or None if absent."""
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


# ops that read only their input's shape: a value reached through them does not depend on
# the input's values
SHAPE_ONLY = frozenset({"Shape", "Size"})


def _closure(start: str, step: Any) -> set[str]:
    """Every tensor reached from `start` (itself included), `step(t)` giving t's neighbours."""
    seen, todo = set(), [start]
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo += step(t)
    return seen


def ancestors(graph: onnx.GraphProto, name: str) -> set[str]:
    """Every tensor `name`'s value depends on (itself included), through the graph's nodes;
    a Shape or Size node's input is not a dependency of its value."""
    producers = {o: n for n in graph.node for o in n.output if o}

    def up(t: str) -> list[str]:
        node = producers.get(t)
        return [i for i in node.input if i] if node is not None \
            and node.op_type not in SHAPE_ONLY else []
    return _closure(name, up)


def descendants(graph: onnx.GraphProto, name: str) -> set[str]:
    """Every tensor whose value depends on `name` (itself included)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def down(t: str) -> list[str]:
        return [o for n in readers.get(t, []) if n.op_type not in SHAPE_ONLY
                for o in n.output if o]
    return _closure(name, down)
