"""People, workload identities and their credentials, and the rules on them.

``service`` (people, identities, keys), ``governance`` (roles, joiners, clearance, access
reviews), ``lifecycle`` (rotation, leaks, attention flags, departures), ``admin_keys``
(people's keys to the admin API), ``rules`` (the separation-of-duties checks they share),
``bootstrap`` (the first identity-admin, once, and recovery when none is left),
``lookup`` (finding records by name), ``credentials`` (key ids and revocation marks),
``view`` (what grants match on), ``events`` (what owners are told) and ``bootstrap`` (the first
identity-admin, once, and recovery with several people's codes).
"""
