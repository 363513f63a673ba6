"""policies: causal video models, codecs, control encoders and RL policy wrappers.

Importing this package loads no weights; diffusers is imported only when a
model is built or loaded.
"""

from policies.causal_wan import CausalWan
from policies.flow_policy import FlowPolicy
from policies.generate import GeneratedFrame, generate
from policies.causal_kv_cache import KVCache

__all__ = ["CausalWan", "FlowPolicy", "GeneratedFrame", "KVCache", "generate"]
