"""adder's edge runtime: onnxruntime plus a pure-Python codec; no training stack."""

from .config import ConfigError, ModelConfig
from .grammar import QueryError
from .session import Adder, ModelError

__all__ = ["Adder", "ConfigError", "ModelConfig", "ModelError", "QueryError"]
__version__ = "0.1.0"
