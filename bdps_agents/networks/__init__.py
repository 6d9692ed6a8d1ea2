"""Neural modules: stacked (per-group) layers, the recurrent agent, mixers."""

from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.group_selector import GraphAttention, GroupSelector
from bdps_agents.networks.mixer import QMixer, VDNMixer
from bdps_agents.networks.role_selector import RoleSelector
from bdps_agents.networks.stacked import StackedGRUCell, StackedLinear

__all__ = [
    "GraphAttention",
    "GroupSelector",
    "QMixer",
    "RecurrentAgent",
    "RoleSelector",
    "StackedGRUCell",
    "StackedLinear",
    "VDNMixer",
]
