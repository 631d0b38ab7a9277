"""The plan's traffic-share model at scale, in process (no store): two policies of N aliases
(default 5,000), each routed over 5 of 20 deployments (on-prem and cloud, embedded and upstream,
allowed one to four classes) and granted up to a class, every route drawn afresh in the second;
one deployment's first-token timeout tightened. Prints the time of ``share_changes`` and
``failover_changes`` (best of three) and how many changes and widenings they find.

    .venv/bin/python scripts/plan_flows_scale.py [ALIASES]
"""

import random
import sys
import time

from gatehouse.core.classification import DATA_CLASSES
from gatehouse.policy.flows import failover_changes, share_changes
from gatehouse.policy.schema import PolicyDocument


def policy(aliases: int, seed: int, tight: bool = False) -> PolicyDocument:
    draw = random.Random(seed)
    deployments = {}
    for i in range(20):
        embedded = i % 4 == 0
        deployments[f"d{i}"] = {"engine": "embedded" if embedded else "vllm", "model": "m",
                                **({} if embedded else {"url": f"http://d{i}.example/v1"}),
                                "location": "cloud" if i % 2 else "on-prem", "data_classes": list(DATA_CLASSES[: 1 + i % 4]),
                                **({"timeouts": {"first_token": 1}} if tight and i == 1 else {})}
    return PolicyDocument.model_validate({
        "version": 1, "deployments": deployments,
        "aliases": {f"a{j}": {"route": draw.sample(sorted(deployments), 5)} for j in range(aliases)},
        "grants": [{"name": f"g{j}", "subjects": [{"team": "t"}], "aliases": [f"a{j}"],
                    "max_data_class": DATA_CLASSES[j % 4]} for j in range(aliases)]})


def best_of_three(function, *args):  # type: ignore[no-untyped-def]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    aliases = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    before, after = policy(aliases, 1), policy(aliases, 2, tight=True)
    share_time, shares = best_of_three(share_changes, before, after)
    failover_time, failover = best_of_three(failover_changes, before, after)
    promotions = sum(len(change.promoted) for change in shares)
    print(f"{aliases:,} aliases, every route redrawn: share_changes {share_time * 1000:.0f} ms "
          f"({len(shares):,} lane groups changed, {promotions:,} promotions to acknowledge); "
          f"failover_changes {failover_time * 1000:.0f} ms ({len(failover):,} widenings)")


if __name__ == "__main__":
    main()
