"""How fast `gatehouse audit verify` checks the chain and the signed checkpoints (entries/s).

    .venv/bin/python scripts/audit_verify_speed.py [ENTRIES]
"""

import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatehouse import audit
from gatehouse.audit import checkpoints
from gatehouse.store.db import Database


def main(count: int) -> None:
    db = Database(f"sqlite:///{Path(tempfile.mkdtemp()) / 'audit.db'}")
    db.upgrade()
    key = Ed25519PrivateKey.generate()
    checkpoints.configure(key, every=100)
    started = time.perf_counter()
    for start in range(0, count, 1000):
        with db.write() as session:
            for index in range(start, min(start + 1000, count)):
                audit.append(session, "local:bench", "bench.event", f"thing:{index}", {"n": index, "why": "benchmark"})
    appended = time.perf_counter() - started
    with db.read() as session:
        started = time.perf_counter()
        chain = audit.verify(session)
        chain_s = time.perf_counter() - started
        started = time.perf_counter()
        signed = checkpoints.verify_stored(session, key.public_key())
        signed_s = time.perf_counter() - started
    assert chain.ok and signed.ok
    print(f"{count:,} entries appended in {appended:.1f} s ({count / appended:,.0f}/s, {signed.checked} checkpoints); "
          f"chain verified at {count / chain_s:,.0f} entries/s; {signed.checked} checkpoints in {signed_s * 1000:.0f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
