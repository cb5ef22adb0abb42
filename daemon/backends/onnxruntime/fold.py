"""Exact rewrites of an FP32 ONNX graph that ONNX Runtime's CPU optimizer does not make by itself.

PP-LCNetV3, the backbone of PP-OCRv4's detector and recognizer, follows its convolutions and activations
with a learnable scalar affine (y = s * x + b: a Mul and an Add of one-element constants), and the export
writes hard-swish out as x * clip(x + 3, 0, 6) / 6. ONNX Runtime fuses none of them, so every layer leaves
its NCHWc convolution for four full-size elementwise passes and layout reorders: a large share of the v4
detector's time on the CPU (bench/RESULTS.md section 24). Three rewrites, each exact up to float rounding:

- Conv -> Mul(s) [-> Add(b)]: into the convolution's weights (W * s) and bias (bias * s + b);
- Mul(s) -> Add(b) -> 1x1 Conv without padding: into that convolution (W * s, bias + b * sum W); only
  unpadded, because a padded convolution sees zeros at the border where the affine would have put b;
- x * clip(x + 3, 0, 6) / 6 -> x * HardSigmoid(x, 1/6, 1/2), which ONNX Runtime then fuses into the
  convolution before it (opset 6 ops, so the model's opset stays as it is).

The functions take and change an ``onnx.ModelProto``; nothing here reads or writes files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class FoldCounts:
    conv_affines: int         # Conv -> Mul [-> Add] folded into the conv
    pointwise_affines: int    # Mul -> Add -> 1x1 Conv folded into the conv
    hard_swishes: int         # decomposed hard-swish rewritten

    @property
    def total(self) -> int:
        return self.conv_affines + self.pointwise_affines + self.hard_swishes


def fold(model) -> FoldCounts:
    """Rewrites ``model`` in place (see the module docstring) and drops what no node uses any more."""
    hard_swishes = _rewrite_hard_swish(_Graph(model))
    conv_affines = _fold_conv_affines(_Graph(model))
    pointwise_affines = _fold_into_pointwise(_Graph(model))
    _drop_unused(model)
    return FoldCounts(conv_affines, pointwise_affines, hard_swishes)


class _Graph:
    """Lookups over one graph: producers, consumers, constant values."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.outputs = {o.name for o in self.graph.output}
        self.initializers = {i.name: i for i in self.graph.initializer}
        self.constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                          for n in self.graph.node if n.op_type == "Constant" and n.attribute
                          and n.attribute[0].name == "value"}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def array(self, name: str) -> Optional[np.ndarray]:
        if name in self.constants:
            return self.constants[name]
        if name in self.initializers:
            from onnx import numpy_helper

            return numpy_helper.to_array(self.initializers[name])
        return None

    def scalar(self, name: str) -> Optional[float]:
        a = self.array(name)
        return float(a.reshape(-1)[0]) if a is not None and a.size == 1 and a.dtype == np.float32 else None

    def only_consumer(self, name: str):
        """The single node reading ``name``, or None where several do or it is a graph output."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def split_scalar(self, node) -> Optional[tuple[str, float]]:
        """(the other input, the scalar) for a binary node with exactly one one-element constant input."""
        if len(node.input) != 2:
            return None
        values = [self.scalar(i) for i in node.input]
        if (values[0] is None) == (values[1] is None):
            return None
        k = 0 if values[0] is None else 1
        return node.input[k], float(values[1 - k])

    def conv_weights(self, conv) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """The conv's weights and bias (zeros where it has none), in float64 for the folding."""
        w = self.array(conv.input[1])
        if w is None or w.dtype != np.float32:
            return None
        b = self.array(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0], np.float32)
        if b is None:
            return None
        return w.astype(np.float64), b.astype(np.float64)

    def _fresh(self, base: str) -> str:
        """A tensor name not yet in the graph (a conv can be folded by two of the rewrites)."""
        taken = {i.name for i in self.graph.initializer} | set(self.producer) | set(self.consumers)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}{n}"
        return name

    def set_conv_weights(self, conv, x: str, w: np.ndarray, b: np.ndarray) -> None:
        from onnx import numpy_helper

        wn, bn = self._fresh(f"{conv.name}_folded_w"), self._fresh(f"{conv.name}_folded_b")
        self.graph.initializer.extend([numpy_helper.from_array(w.astype(np.float32), wn),
                                       numpy_helper.from_array(b.astype(np.float32), bn)])
        del conv.input[:]
        conv.input.extend([x, wn, bn])


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _remove(graph, dead: list) -> None:
    ids = {id(n) for n in dead}
    keep = [n for n in graph.node if id(n) not in ids]
    del graph.node[:]
    graph.node.extend(keep)


def _rewrite_hard_swish(g: _Graph) -> int:
    """x -> Add(3) -> Clip(0, 6) -> Mul(x, .) -> Div(6)  becomes  x -> HardSigmoid(1/6, 1/2) -> Mul(x, .)."""
    from onnx import helper

    count, dead = 0, []
    for add in list(g.graph.node):
        if add.op_type != "Add" or (split := g.split_scalar(add)) is None or split[1] != 3.0:
            continue
        x = split[0]
        clip = g.only_consumer(add.output[0])
        if clip is None or clip.op_type != "Clip" or len(clip.input) != 3:
            continue
        if g.scalar(clip.input[1]) != 0.0 or g.scalar(clip.input[2]) != 6.0:
            continue
        mul = g.only_consumer(clip.output[0])
        if mul is None or mul.op_type != "Mul" or set(mul.input) != {x, clip.output[0]}:
            continue
        div = g.only_consumer(mul.output[0])
        if div is None or div.op_type != "Div" or div.input[0] != mul.output[0] or g.scalar(div.input[1]) != 6.0:
            continue
        gate = f"{div.name}_hard_sigmoid"
        # In place of the Add, so the graph stays in topological order (x is ready there).
        add.CopyFrom(helper.make_node("HardSigmoid", [x], [gate], name=gate, alpha=1.0 / 6.0, beta=0.5))
        div.CopyFrom(helper.make_node("Mul", [x, gate], [div.output[0]], name=f"{div.name}_hard_swish"))
        dead += [clip, mul]
        count += 1
    _remove(g.graph, dead)
    return count


def _fold_conv_affines(g: _Graph) -> int:
    """Conv -> Mul(s) [-> Add(b)]  becomes  Conv(W * s, bias * s + b)."""
    count, dead = 0, []
    for conv in list(g.graph.node):
        if conv.op_type != "Conv" or (weights := g.conv_weights(conv)) is None:
            continue
        mul = g.only_consumer(conv.output[0])
        if mul is None or mul.op_type != "Mul" or (split := g.split_scalar(mul)) is None:
            continue
        s, b, last = split[1], 0.0, mul
        add = g.only_consumer(mul.output[0])
        if add is not None and add.op_type == "Add" and (split_add := g.split_scalar(add)) is not None:
            b, last = split_add[1], add
        w, bias = weights
        g.set_conv_weights(conv, conv.input[0], w * s, bias * s + b)
        conv.output[0] = last.output[0]
        dead += [mul] if last is mul else [mul, add]
        count += 1
    _remove(g.graph, dead)
    return count


def _fold_into_pointwise(g: _Graph) -> int:
    """x -> Mul(s) -> Add(b) -> Conv 1x1 (no padding, one group)  becomes  x -> Conv(W * s, bias + b * sum W)."""
    count, dead = 0, []
    for add in list(g.graph.node):
        if add.op_type != "Add" or (split_add := g.split_scalar(add)) is None:
            continue
        mul = g.producer.get(split_add[0])
        if mul is None or mul.op_type != "Mul" or g.only_consumer(mul.output[0]) is not add:
            continue
        if (split_mul := g.split_scalar(mul)) is None:
            continue
        conv = g.only_consumer(add.output[0])
        if conv is None or conv.op_type != "Conv" or conv.input[0] != add.output[0]:
            continue
        a = _attrs(conv)
        if (list(a.get("kernel_shape", [])) != [1, 1] or any(a.get("pads", [])) or a.get("group", 1) != 1
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        if (weights := g.conv_weights(conv)) is None:
            continue
        w, bias = weights
        s, b = split_mul[1], split_add[1]
        g.set_conv_weights(conv, split_mul[0], w * s, bias + b * w.sum(axis=(1, 2, 3)))
        dead += [mul, add]
        count += 1
    _remove(g.graph, dead)
    return count


def _drop_unused(model) -> None:
    """Constants and initializers that no node reads any more (ONNX Runtime warns about each)."""
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    nodes = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
