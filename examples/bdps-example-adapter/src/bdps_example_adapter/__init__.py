"""An example third-party adapter for bdps-agents: agents in a corridor that must all reach its
far end (``env``), its frame drawer for ``bdps render`` (``render``) and its scenario presets
(``scenarios/*.yaml``). Registered by the entry point in ``pyproject.toml``."""
