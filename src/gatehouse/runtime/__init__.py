"""The hot-path state of a gateway worker: the in-memory key table (``keytable``), the policy
version it enforces and how it follows the store (``enforced``), and the decision-record
writer (``records``). Read by the request path without a database round trip; kept current
by background jobs."""
