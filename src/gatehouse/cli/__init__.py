"""The `gatehouse` command line: ``main`` (init, serve, demo and the command groups),
one module per group, and ``common`` (settings, output, errors)."""
