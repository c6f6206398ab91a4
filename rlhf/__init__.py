"""RLHF workbench: the spine (config, workspace, store, round state machine, CLI)."""

__version__ = "0.1.0"
