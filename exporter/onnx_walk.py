"""Walking an ONNX graph the same way everywhere: subgraphs (If/Loop/Scan bodies), the
recurrent nodes at any depth, and a node's attribute by name."""
from __future__ import annotations

from typing import Any, Iterator

import onnx
from onnx import helper

from .cells import ONNX_OPS

__all__ = ["subgraphs", "recurrent_nodes", "attribute"]


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
