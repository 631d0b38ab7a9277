"""Where identities meet the active policy: the inventory (``inventory``), findings and the
credential report (``findings``), and moves of owner or team judged by the access they change
(``transfers``). Every answer is judged against the version the store says is active."""
