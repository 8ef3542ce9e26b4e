"""A small builder over onnx.helper: named initializers, nodes with generated output names, subgraphs.

Names are unique across a model and its subgraphs (one counter per model), as ONNX requires: a Loop body may
read any value of the outer graph by name, so the weights live once, as initializers of the main graph.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


class Graph:
    def __init__(self, name: str, counter: itertools.count | None = None):
        self.name = name
        self.counter = counter if counter is not None else itertools.count()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self.counter)}"

    def subgraph(self, name: str) -> Graph:
        return Graph(name, self.counter)

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list | None) -> str:
        """Expose `value` as output `name` (through an Identity when the names differ)."""
        if value != name:
            self.nodes.append(helper.make_node("Identity", [value], [name], name=self.fresh("out")))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def const(self, value, hint: str = "const", dtype=None) -> str:
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array.copy(order="C"), name))  # keeps 0-d arrays 0-d
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, hint: str | None = None, **attrs):
        """Add a node; returns its output name, or a list of names when outputs > 1."""
        base = hint or op_type.lower()
        names = [self.fresh(base) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.fresh(f"n_{base}"), **attrs))
        return names[0] if outputs == 1 else names

    def make(self) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)


def make_model(graph: Graph, opset: int, metadata: dict[str, str], doc: str = "") -> onnx.ModelProto:
    model = helper.make_model(graph.make(), opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="musicbridge", doc_string=doc)
    # The IR version that opset shipped with, not the newest onnx knows: runtimes refuse IR versions they predate.
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    helper.set_model_props(model, {key: str(value) for key, value in metadata.items()})
    onnx.checker.check_model(model, full_check=True)
    return model
