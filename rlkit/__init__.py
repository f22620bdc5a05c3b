"""rlkit: reinforcement learning with robustness tooling."""
__version__ = "0.1.0"
