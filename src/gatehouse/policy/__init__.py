"""Policy: the versioned document that composes the domains' schemas, and its change control.

``schema`` (the document), ``loader`` (read with line numbers; the content hash),
``access`` (grant matching: who reaches which alias at which class), ``access_diff``
(whose access a change can move, computed only for them), ``compiled`` (the form
the gateway asks questions of), ``plan`` (what a change does to access and data flow), ``flows`` (which
deployment answers first and which on failure, per alias and data class),
``versions`` (stored versions and the active one), ``planning`` (plans an approval binds to),
``approvals`` (which approvals count), ``change_control`` (propose, approve, apply, rollback,
break-glass), ``views`` (read-only views of versions), ``workers`` (heartbeats, drift) and
``starter`` (the policy `gatehouse init` writes).
"""

from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import LoadedPolicy, PolicyError, load_policy, load_policy_text
from gatehouse.policy.schema import PolicyDocument

__all__ = ["CompiledPolicy", "LoadedPolicy", "PolicyDocument", "PolicyError", "load_policy", "load_policy_text"]
