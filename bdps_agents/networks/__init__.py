"""Neural modules: stacked (per-group) layers, the recurrent agent, mixers (QMIX, VDN, QPLEX)."""

from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.group_selector import GraphAttention, GroupSelector
from bdps_agents.networks.mixer import QMixer, VDNMixer
from bdps_agents.networks.qplex import QPLEXMixer
from bdps_agents.networks.role_selector import RoleSelector
from bdps_agents.networks.stacked import StackedGRUCell, StackedLinear

__all__ = [
    "GraphAttention",
    "GroupSelector",
    "QMixer",
    "QPLEXMixer",
    "RecurrentAgent",
    "RoleSelector",
    "StackedGRUCell",
    "StackedLinear",
    "VDNMixer",
]
