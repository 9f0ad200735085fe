"""adder's edge runtime: onnxruntime plus a pure-Python codec; no training stack."""

from runtime.codec import QueryError
from runtime.config import ConfigError, ModelConfig
from runtime.session import Adder, ModelError

__all__ = ["Adder", "ConfigError", "ModelConfig", "ModelError", "QueryError"]
__version__ = "0.1.0"
