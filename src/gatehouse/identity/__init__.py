"""People, workload identities and their credentials."""
