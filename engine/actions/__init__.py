"""Actions a rule runs: the interface (``base``), the table of built-ins and the lookup (``registry``)."""

from engine.actions.base import Action, ActionContext
from engine.actions.registry import action_class, action_names, register_action

__all__ = ["Action", "ActionContext", "action_class", "action_names", "register_action"]
