"""Errors the control plane raises for a caller to show as they are."""


class GatehouseError(Exception):
    """A clear, user-facing failure: bad input, a missing thing, a refused action."""


class NotFound(GatehouseError):
    pass


class Conflict(GatehouseError):
    pass
