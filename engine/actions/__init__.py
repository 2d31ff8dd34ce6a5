"""Actions a rule runs, registered by name (see ``engine.actions.base``)."""

from engine.actions.base import Action, ActionContext, action_class, action_names, register_action

__all__ = ["Action", "ActionContext", "action_class", "action_names", "register_action"]
