"""A stand-in ``tensorrt`` module (TensorRT 10 API subset) for testing TrtRunner without TensorRT.

It records every call in ``CALLS`` and "executes" an engine by running its ONNX with
onnxruntime on host arrays. "Device memory" is host numpy arrays registered in ``MEMORY`` by
address (see :class:`FakeBuffers`, the device-buffer provider to pass to TrtRunner).

As in TensorRT: the builder, runtime, engine and execution context use the CUDA device current
when they are called (``CURRENT_DEVICE``, set by ``FakeBuffers.activate()`` as
``torch.cuda.device`` does), and an engine runs only on the device it was deserialised on
(``execute_async_v3`` returns False elsewhere); the parsed network has one layer per ONNX node
except Constant nodes (named after the node, outputs named after the ONNX tensors, dtypes from
ONNX shape inference) with ``precision`` / ``set_output_type``, and the build records the marks
it was given (``CALLS`` entry "precisions"). Numerics stay FP32 whatever the flags say.
``ENGINE_OUTPUT_HOOK`` (test control, not TensorRT API) can alter what an engine returns.
Never shipped in the package.
"""
import contextlib
import pickle

import numpy as np
import onnx
import onnxruntime as ort

__version__ = "10.0.1"
CALLS: list = []
MEMORY: dict = {}
CURRENT_DEVICE = 0
ENGINE_OUTPUT_HOOK = None  # test control: callable(name, value) -> value applied to engine outputs
_MAGIC = b"FAKE-TRT-ENGINE\n"


def reset():
    global CURRENT_DEVICE, ENGINE_OUTPUT_HOOK
    CALLS.clear()
    MEMORY.clear()
    CURRENT_DEVICE, ENGINE_OUTPUT_HOOK = 0, None


class Logger:
    ERROR, WARNING, INFO = 1, 2, 3

    def __init__(self, severity=WARNING):
        self.severity = severity


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class BuilderFlag:
    FP16 = "FP16"
    TF32 = "TF32"
    PREFER_PRECISION_CONSTRAINTS = "PREFER_PRECISION_CONSTRAINTS"
    OBEY_PRECISION_CONSTRAINTS = "OBEY_PRECISION_CONSTRAINTS"


class MemoryPoolType:
    WORKSPACE = "WORKSPACE"


class TensorIOMode:
    INPUT, OUTPUT = "INPUT", "OUTPUT"


class DataType:
    FLOAT, HALF, INT32, INT64, BOOL = "FLOAT", "HALF", "INT32", "INT64", "BOOL"


float32, float16 = DataType.FLOAT, DataType.HALF
_ONNX_TYPES = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
               onnx.TensorProto.INT32: DataType.INT32, onnx.TensorProto.INT64: DataType.INT64,
               onnx.TensorProto.BOOL: DataType.BOOL}


def nptype(dtype):
    assert dtype == DataType.FLOAT
    return np.float32


class _Tensor:
    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class _Layer:
    """An ILayer: one per ONNX node; ``type`` is the node's op type here (a LayerType in TensorRT)."""

    def __init__(self, node, tensors):
        self.name, self.type = node.name, node.op_type
        self.metadata = f"[ONNX Layer: {node.name}]"
        self._inputs = [tensors[n] if n else None for n in node.input]
        self._outputs = [tensors[n] for n in node.output]
        self._precision, self.precision_is_set, self._output_types = DataType.FLOAT, False, {}

    @property
    def num_inputs(self):
        return len(self._inputs)

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_input(self, i):
        return self._inputs[i]

    def get_output(self, i):
        return self._outputs[i]

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, dtype):
        self._precision, self.precision_is_set = dtype, True

    def set_output_type(self, i, dtype):
        assert 0 <= i < len(self._outputs)
        self._output_types[i] = dtype

    def get_output_type(self, i):
        return self._output_types.get(i, DataType.FLOAT)

    def output_type_is_set(self, i):
        return i in self._output_types


class _Network:
    def __init__(self, flags):
        self.flags, self.onnx_bytes, self.layers = flags, None, []

    def load(self, model):
        inferred = onnx.shape_inference.infer_shapes(model)
        values = list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
        types = {v.name: v.type.tensor_type.elem_type for v in values}
        types.update({t.name: t.data_type for t in model.graph.initializer})
        tensors = {}
        for node in model.graph.node:
            for name in list(node.input) + list(node.output):
                if name and name not in tensors:
                    tensors[name] = _Tensor(name, _ONNX_TYPES.get(types.get(name)))
        # the ONNX parser adds no layer for Constant nodes (their values become weights)
        self.layers = [_Layer(node, tensors) for node in model.graph.node if node.op_type != "Constant"]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse(self, data: bytes) -> bool:
        CALLS.append(("parse", len(data)))
        try:
            model = onnx.load_from_string(data)
        except Exception as exc:  # noqa: BLE001 - any decode failure is a parse error
            self.errors = [f"not an ONNX model: {exc}"]
            return False
        self.network.onnx_bytes = data
        self.network.load(model)
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min_shape, opt_shape, max_shape):
        self.shapes[name] = (tuple(min_shape), tuple(opt_shape), tuple(max_shape))


class _Config:
    def __init__(self):
        self.flags, self.pools, self.profiles = {BuilderFlag.TF32}, {}, []  # TF32 is on by default

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        CALLS.append(("create_network", flags))
        return _Network(flags)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        CALLS.append(("build", sorted(config.flags), dict(config.pools), [p.shapes for p in config.profiles],
                      CURRENT_DEVICE))
        CALLS.append(("precisions", {layer.name: (layer.type, layer.precision,
                                                  {k: layer.get_output_type(k) for k in range(layer.num_outputs)
                                                   if layer.output_type_is_set(k)})
                                     for layer in network.layers
                                     if layer.precision_is_set or any(map(layer.output_type_is_set,
                                                                          range(layer.num_outputs)))}))
        assert network.onnx_bytes is not None and len(config.profiles) == 1
        return _MAGIC + pickle.dumps({"onnx": network.onnx_bytes, "profile": config.profiles[0].shapes})


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, blob):
        CALLS.append(("deserialize", len(blob), CURRENT_DEVICE))
        if not bytes(blob).startswith(_MAGIC):
            return None  # as TensorRT does for an engine it cannot read
        return _Engine(pickle.loads(bytes(blob)[len(_MAGIC):]))


class _Engine:
    def __init__(self, data):
        self.device = CURRENT_DEVICE
        self.session = ort.InferenceSession(data["onnx"], providers=["CPUExecutionProvider"])
        self.profile = data["profile"]
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def num_io_tensors(self):
        return len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i):
        return (self.inputs + self.outputs)[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def create_execution_context(self):
        CALLS.append(("context", CURRENT_DEVICE))
        return _Context(self)


class _Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.results = engine, {}, {}, None

    def set_input_shape(self, name, shape):
        CALLS.append(("set_input_shape", name, tuple(shape)))
        lo, _, hi = self.engine.profile[name]
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        feeds = {n: np.zeros(self.shapes[n], np.float32) for n in self.engine.inputs}
        self.results = dict(zip(self.engine.outputs, self.engine.session.run(None, feeds)))
        return True

    def get_tensor_shape(self, name):
        return self.shapes[name] if name in self.shapes else self.results[name].shape

    def set_tensor_address(self, name, address):
        CALLS.append(("set_tensor_address", name))
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        feeds = {n: MEMORY[self.addresses[n]] for n in self.engine.inputs}
        CALLS.append(("execute", {n: v.shape for n, v in feeds.items()}, CURRENT_DEVICE))
        if CURRENT_DEVICE != self.engine.device:
            return False  # an engine runs only on the device it was deserialised on
        for name, value in zip(self.engine.outputs, self.engine.session.run(None, feeds)):
            MEMORY[self.addresses[name]][...] = value if ENGINE_OUTPUT_HOOK is None else ENGINE_OUTPUT_HOOK(name, value)
        return True


class FakeBuffers:
    """Device-buffer provider for TrtRunner over host arrays (what TorchCudaBuffers does on a GPU)."""

    def __init__(self, gpu_name="Fake GPU", capability="8.6", device=0):
        self.gpu_name, self.capability, self.device = gpu_name, capability, device
        self.stream_handle = 0

    @contextlib.contextmanager
    def activate(self):
        global CURRENT_DEVICE
        previous, CURRENT_DEVICE = CURRENT_DEVICE, self.device
        try:
            yield
        finally:
            CURRENT_DEVICE = previous

    def gpu(self):
        return self.gpu_name, self.capability

    def empty(self, shape, dtype):
        array = np.empty(shape, dtype)
        MEMORY[array.ctypes.data] = array
        return array

    def upload(self, array):
        device = self.empty(array.shape, array.dtype)
        device[...] = array
        return device

    @staticmethod
    def address(buffer):
        return buffer.ctypes.data

    def synchronize(self):
        pass

    @staticmethod
    def download(buffer):
        return buffer.copy()
