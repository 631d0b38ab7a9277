"""Errors the control plane raises for a caller to show as they are."""


class GatehouseError(Exception):
    """A clear, user-facing failure: bad input, a missing thing, a refused action."""


class NotFound(GatehouseError):
    pass


class Conflict(GatehouseError):
    pass


class Unauthenticated(GatehouseError):
    """The credential presented is missing, malformed, unknown, revoked or expired, or its
    holder is not active. ``code`` says which, in the API's error-code vocabulary."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
