"""The HTTP layer: the OpenAI-compatible inference endpoints (``inference``), the admin API on
one role-checked base (``admin``: who is calling, through an ``Authenticator``; then
``people``, ``identities``, ``keys``, ``reviews``, ``audit``, ``inventory``, ``policy``,
``incidents``, ``leaks``), health (``health``), metrics (``metrics``), the error shape and the one map
from domain errors to HTTP (``errors``), request-body checks (``validation``), streaming helpers
(``streaming``) and the route table (``routes``). Knows HTTP; holds no state of its own."""
