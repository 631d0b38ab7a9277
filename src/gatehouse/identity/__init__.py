"""People, workload identities and their credentials, and the rules on them.

``service`` (people, identities, keys), ``governance`` (roles, joiners, clearance, access
reviews), ``lifecycle`` (rotation, leaks, attention flags, departures), ``admin_keys``
(people's keys to the admin API), ``rules`` (the separation-of-duties checks they share),
``lookup`` (finding records by name), ``credentials`` (key ids and revocation marks),
``view`` (what grants match on) and ``events`` (what owners are told).
"""
