"""Policy documents: deployments, model aliases and their routes, grants."""

from gatehouse.identity.view import IdentityView
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import PolicyError, load_policy, load_policy_text
from gatehouse.policy.schema import PolicyDocument

__all__ = ["CompiledPolicy", "IdentityView", "PolicyDocument", "PolicyError", "load_policy", "load_policy_text"]
