"""The policy ``gatehouse init`` writes: the embedded model, granted to every dev identity."""

STARTER_POLICY = """\
# Gatehouse policy, version 1. Check it with: gatehouse policy validate
# Docs: docs/policy.md
version: 1

deployments:
  embedded-gemma:
    engine: embedded            # llama.cpp inside the gateway process
    model: gemma-3-270m         # the built-in model, assembled from PyPI packages
    location: on-prem
    data_classes: [public, internal, confidential, restricted]
    settings:
      context_size: 2048

aliases:
  chat-small:
    description: Gemma 3 270M on the embedded engine
    route: [embedded-gemma]     # primary first, then fallbacks

grants:
  - name: dev-chat-small
    description: every identity in the dev environment may call chat-small
    subjects:
      - environment: dev
    aliases: [chat-small]
"""
