"""A stand-in ``tensorrt`` module (TensorRT 10 API subset) for testing TrtRunner without TensorRT.

It records every call in ``CALLS`` and "executes" an engine by running its ONNX with
onnxruntime on host arrays. "Device memory" is host numpy arrays registered in ``MEMORY`` by
address (see :class:`FakeBuffers`, the device-buffer provider to pass to TrtRunner).
Never shipped in the package.
"""
import pickle

import numpy as np
import onnx
import onnxruntime as ort

__version__ = "10.0.1"
CALLS: list = []
MEMORY: dict = {}
_MAGIC = b"FAKE-TRT-ENGINE\n"


def reset():
    CALLS.clear()
    MEMORY.clear()


class Logger:
    ERROR, WARNING, INFO = 1, 2, 3

    def __init__(self, severity=WARNING):
        self.severity = severity


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class BuilderFlag:
    FP16 = "FP16"


class MemoryPoolType:
    WORKSPACE = "WORKSPACE"


class TensorIOMode:
    INPUT, OUTPUT = "INPUT", "OUTPUT"


class DataType:
    FLOAT = "FLOAT"


def nptype(dtype):
    assert dtype == DataType.FLOAT
    return np.float32


class _Network:
    def __init__(self, flags):
        self.flags, self.onnx_bytes = flags, None


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse(self, data: bytes) -> bool:
        CALLS.append(("parse", len(data)))
        try:
            onnx.load_from_string(data)
        except Exception as exc:  # noqa: BLE001 - any decode failure is a parse error
            self.errors = [f"not an ONNX model: {exc}"]
            return False
        self.network.onnx_bytes = data
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
        self.flags, self.pools, self.profiles = set(), {}, []

    def set_flag(self, flag):
        self.flags.add(flag)

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
        CALLS.append(("build", sorted(config.flags), dict(config.pools), [p.shapes for p in config.profiles]))
        assert network.onnx_bytes is not None and len(config.profiles) == 1
        return _MAGIC + pickle.dumps({"onnx": network.onnx_bytes, "profile": config.profiles[0].shapes})


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, blob):
        CALLS.append(("deserialize", len(blob)))
        if not bytes(blob).startswith(_MAGIC):
            return None  # as TensorRT does for an engine it cannot read
        return _Engine(pickle.loads(bytes(blob)[len(_MAGIC):]))


class _Engine:
    def __init__(self, data):
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
        CALLS.append(("execute", {n: v.shape for n, v in feeds.items()}))
        for name, value in zip(self.engine.outputs, self.engine.session.run(None, feeds)):
            MEMORY[self.addresses[name]][...] = value
        return True


class FakeBuffers:
    """Device-buffer provider for TrtRunner over host arrays (what TorchCudaBuffers does on a GPU)."""

    def __init__(self, gpu_name="Fake GPU", capability="8.6"):
        self.gpu_name, self.capability = gpu_name, capability
        self.stream_handle = 0

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
