"""Route resolution with fallback."""

from gatehouse.routing.router import Attempt, NoDeploymentAnswered, dispatch

__all__ = ["Attempt", "NoDeploymentAnswered", "dispatch"]
