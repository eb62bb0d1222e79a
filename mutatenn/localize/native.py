"""Taps of native runtimes: PyTorch (the module's torch.export graph run op by op with
`torch.fx.Interpreter`, recording the nodes asked for) and ONNX Runtime (the chosen node
outputs added as graph outputs of a copy of the model). Their layer records use the kinds
and attribute names of the Relax records (`layers`), so alignment and the conversion
analysis treat every side alike."""
from __future__ import annotations

import copy
import operator

import numpy as np

from .capture import Tap
from .layers import Layer, LayerGraph

# ATen op -> the Relax kind it corresponds to (others keep their own name).
TORCH_KINDS = {"linear": "matmul", "mm": "matmul", "addmm": "matmul", "flatten": "reshape", "view": "reshape",
               "_native_batch_norm_legit_no_training": "batch_norm", "adaptive_avg_pool2d": "adaptive_avg_pool2d",
               "mean": "mean", "cat": "concat", "hardtanh": "clip", "silu": "silu"}
# ONNX op type -> Relax kind.
ONNX_KINDS = {"Conv": "conv2d", "Gemm": "matmul", "MatMul": "matmul", "Add": "add", "Sub": "subtract",
              "Mul": "multiply", "Div": "divide", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
              "MaxPool": "max_pool2d", "AveragePool": "avg_pool2d", "GlobalAveragePool": "adaptive_avg_pool2d",
              "BatchNormalization": "batch_norm", "Flatten": "reshape", "Reshape": "reshape",
              "Transpose": "permute_dims", "Softmax": "softmax", "Concat": "concat", "Clip": "clip",
              "LeakyRelu": "leakyrelu", "Identity": "identity"}
# ONNX attribute -> the Relax attribute name; ONNX's pads (begin..., end...) is Relax's padding order.
ONNX_ATTRS = {"strides": "strides", "pads": "padding", "dilations": "dilation", "group": "groups",
              "epsilon": "epsilon", "axis": "axis", "kernel_shape": "pool_size", "ceil_mode": "ceil_mode",
              "alpha": "alpha", "transA": "transpose_a", "transB": "transpose_b"}


def _aten_kind(target) -> str:
    name = getattr(target, "__name__", str(target)).split(".")[0]
    return TORCH_KINDS.get(name, name)


def _schema_args(node) -> dict:
    """An ATen call's arguments by name, defaults filled in from the op's schema."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _torch_attrs(kind: str, node) -> dict:
    """The hyperparameters of an ATen call, in the Relax records' names."""
    args = _schema_args(node)

    def pair(v):
        return tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else [v, v]))

    if kind == "conv2d":
        pad = pair(args.get("padding", 0))
        return {"strides": pair(args.get("stride", 1)), "padding": pad + pad, "dilation": pair(args.get("dilation", 1)),
                "groups": int(args.get("groups", 1))}
    if kind == "max_pool2d":
        pad = pair(args.get("padding", 0))
        return {"pool_size": pair(args["kernel_size"]), "strides": pair(args.get("stride") or args["kernel_size"]),
                "padding": pad + pad, "dilation": pair(args.get("dilation", 1)),
                "ceil_mode": bool(args.get("ceil_mode", False))}
    if kind == "batch_norm" and "eps" in args:
        return {"epsilon": float(args["eps"]), "axis": 1}
    return {}


class TorchTap(Tap):
    """PyTorch on the CPU: the model's torch.export graph, run node by node."""

    @classmethod
    def model_of(cls, program):
        from ..frameworks import convert

        return convert(program.source, "torch.export").payload.module()

    @classmethod
    def layer_graph(cls, program, model) -> LayerGraph:
        """One record per ``call_function`` node with a tensor value; parameters are the
        ``get_attr`` nodes it reads."""
        import torch

        graph = model.graph
        input_name = next(n.name for n in graph.nodes if n.op == "placeholder")
        layers, constants, alias, dependent = [], {}, {}, {input_name}
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            value = node.meta.get("val")
            if node.target is operator.getitem:
                alias[node.name] = alias.get(node.args[0].name, node.args[0].name)
                continue
            if not isinstance(value, torch.Tensor):
                continue
            kind = _aten_kind(node.target)
            reads, consts = [], []
            for pos, arg in enumerate(node.args):
                if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                    consts.append(pos)
                    constants.setdefault(node.name, []).append((pos, arg.target))
                elif isinstance(arg, torch.fx.Node):
                    reads.append(alias.get(arg.name, arg.name))
            shape = tuple(int(d) for d in value.shape)
            layers.append(Layer(len(layers), node.name, kind, str(node.target), shape, str(value.dtype).split(".")[-1],
                                "NCHW" if len(shape) == 4 else "", _torch_attrs(kind, node), tuple(consts),
                                tuple(reads), any(r in dependent for r in reads)))
            if layers[-1].data_dependent:
                dependent.add(node.name)
        out_node = next(n for n in graph.nodes if n.op == "output")
        ret = out_node.args[0]
        ret = ret[0] if isinstance(ret, (tuple, list)) else ret
        return LayerGraph(layers, alias.get(ret.name, ret.name), input_name, "NCHW", constants, alias,
                          read=lambda target: _attr(model, target).detach().numpy())

    def run(self, names: list[str], rows: list[int] | None = None) -> dict[str, np.ndarray]:
        import torch

        wanted = set(names)
        values: dict[str, list] = {n: [] for n in ["__output__", *names]}

        class _Recorder(torch.fx.Interpreter):
            def run_node(self, n):
                result = super().run_node(n)
                if n.name in wanted:
                    values[n.name].append(result.detach().numpy().copy())
                return result

        batch = self.batch if rows is None else self.batch[rows]
        self.builds += 1  # one pass over the images: a round
        with torch.no_grad():
            for i in range(len(batch)):
                out = _Recorder(self.model).run(torch.from_numpy(np.ascontiguousarray(batch[i : i + 1])))
                out = out[0] if isinstance(out, (tuple, list)) else out
                values["__output__"].append(out.detach().numpy())
        return {k: np.concatenate(v, axis=0) for k, v in values.items()}


def _attr(module, target: str):
    for part in target.split("."):
        module = getattr(module, part)
    return module


class OnnxTap(Tap):
    """ONNX Runtime on the CPU: a session per round, the chosen node outputs added as graph outputs."""

    repairs = True
    reduces = True

    @classmethod
    def model_of(cls, program):
        return program.form.payload

    @classmethod
    def layer_graph(cls, program, model) -> LayerGraph:
        """One record per node output with a known tensor shape; initializers are its constants."""
        import onnx
        from onnx import numpy_helper

        inferred = onnx.shape_inference.infer_shapes(model)
        shapes = {}
        for info in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
            dims = info.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                shapes[info.name] = tuple(int(d.dim_value) for d in dims)
        inits = {i.name: i for i in model.graph.initializer}
        input_name = next(i.name for i in model.graph.input if i.name not in inits)
        shapes.setdefault(input_name, tuple(program.input.shape))
        layers, constants, dependent, alias = [], {}, {input_name}, {}
        layout = program.input.layout
        for node in model.graph.node:
            out = node.output[0]
            if node.op_type == "Constant" or out not in shapes:
                continue
            reads, consts = [], []
            for pos, name in enumerate(node.input):
                if name in inits:
                    consts.append(pos)
                    constants.setdefault(out, []).append((pos, name))
                elif name:
                    reads.append(alias.get(name, name))
            kind = ONNX_KINDS.get(node.op_type, node.op_type.lower())
            attrs = {ONNX_ATTRS[a.name]: _onnx_value(a) for a in node.attribute if a.name in ONNX_ATTRS}
            shape = shapes[out]
            layers.append(Layer(len(layers), out, kind, node.op_type, shape, "float32",
                                layout if len(shape) == 4 else "", attrs, tuple(consts), tuple(reads),
                                any(r in dependent for r in reads)))
            if layers[-1].data_dependent:
                dependent.add(out)
        output = alias.get(model.graph.output[0].name, model.graph.output[0].name)
        return LayerGraph(layers, output, input_name, layout, constants, alias,
                          read=lambda name: numpy_helper.to_array(inits[name]))

    def cut(self, first: str, last: str):
        """The nodes from the one giving ``first`` to the one giving ``last`` (and the
        Constant nodes they read) as an ONNX model of their own (`onnx.utils.Extractor`)."""
        from onnx.utils import Extractor

        nodes = list(self.model.graph.node)
        outputs = [n.output[0] for n in nodes]
        start, end = outputs.index(first), outputs.index(last)
        constants = {n.output[0] for n in nodes if n.op_type == "Constant"}
        inits = {i.name for i in self.model.graph.initializer}
        chosen = nodes[start : end + 1]
        made = {o for n in chosen for o in n.output} | constants | inits
        externals = list(dict.fromkeys(i for n in chosen for i in n.input if i and i not in made))
        sub = Extractor(self.model).extract_model(externals, [last])
        return sub, externals, [n.output[0] for n in chosen]

    def run_subgraph(self, subgraph, inputs: list[np.ndarray]) -> np.ndarray:
        session = _session(subgraph)
        names = [i.name for i in session.get_inputs()]
        rows = [session.run(None, {n: np.ascontiguousarray(x[i : i + 1]) for n, x in zip(names, inputs)})[0]
                for i in range(len(inputs[0]))]
        return np.concatenate(rows, axis=0)

    def save_subgraph(self, subgraph, folder, stem: str) -> list[str]:
        import onnx

        onnx.save(subgraph, str(folder / f"{stem}.onnx"))
        return [f"{stem}.onnx"]

    def run(self, names: list[str], rows: list[int] | None = None) -> dict[str, np.ndarray]:
        import onnx

        model = copy.deepcopy(self.model)
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
        session = _session(model)
        self.builds += 1
        input_name = session.get_inputs()[0].name
        outputs = [self.model.graph.output[0].name, *names]
        batch = self.batch if rows is None else self.batch[rows]
        values: dict[str, list] = {n: [] for n in ["__output__", *names]}
        for i in range(len(batch)):
            result = session.run(outputs, {input_name: np.ascontiguousarray(batch[i : i + 1])})
            for key, item in zip(values, result):
                values[key].append(item)
        return {k: np.concatenate(v, axis=0) for k, v in values.items()}

    def repaired(self, actions, batch: np.ndarray) -> "OnnxTap":
        """A copy of the ONNX model with A's initializers restored and attributes set."""
        from onnx import helper, numpy_helper

        model = copy.deepcopy(self.model)
        inits = {i.name: i for i in model.graph.initializer}
        nodes = {n.output[0]: n for n in model.graph.node}
        onnx_name = {v: k for k, v in ONNX_ATTRS.items()}
        for action in actions:
            if action is None or action[0] == "input":
                continue
            kind, layer, key, value = action
            if kind == "constant":
                name = dict(self.layer_graph(self.program, model).constants[layer])[key]
                inits[name].CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
            else:
                node = nodes[layer]
                keep = [a for a in node.attribute if a.name != onnx_name[key]]
                del node.attribute[:]
                node.attribute.extend(keep + [helper.make_attribute(onnx_name[key], _onnx_form(value))])
        return OnnxTap(f"{self.label}-repaired", self.variant, self.program, model, batch)


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _onnx_value(attribute):
    from onnx import helper

    value = helper.get_attribute_value(attribute)
    if isinstance(value, (list, tuple)):
        return tuple(int(v) if isinstance(v, int) else v for v in value)
    return value


def _onnx_form(value):
    return list(value) if isinstance(value, tuple) else value
