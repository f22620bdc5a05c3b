"""rlkit: reinforcement learning with robustness tooling."""

from rlkit.catalog import register_builtins

__version__ = "0.1.0"

register_builtins()
