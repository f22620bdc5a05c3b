"""Environment factories and wrappers (installed as ``rlkit.envs``).

Importing this package is cheap; ``rlkit.envs.grid`` (pandapower) is imported only when used.
"""

from rlkit.envs.factory import feature_groups, feature_names, make_env

__all__ = ["feature_groups", "feature_names", "make_env"]
