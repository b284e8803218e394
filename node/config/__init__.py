"""A node's directory and its node.toml: ``paths`` names every file of NODE_DIR (the layout
is listed there), ``settings`` the typed settings and their defaults, ``load`` the parse and
checks of node.toml. The names below are re-exported so ``from node.config import ...`` holds."""

from node.config.load import check_address, check_lab, load_config, save_config
from node.config.paths import NodePaths
from node.config.settings import (
    ROUND_MODES,
    LimitsConfig,
    NodeConfig,
    PeerConfig,
    ScheduleConfig,
)

__all__ = [
    "ROUND_MODES",
    "LimitsConfig",
    "NodeConfig",
    "NodePaths",
    "PeerConfig",
    "ScheduleConfig",
    "check_address",
    "check_lab",
    "load_config",
    "save_config",
]
