"""An alias's requests.extra_fields names whole field names: nothing slips past the check."""

from __future__ import annotations

import pydantic
import pytest

from gatehouse.policy.schema import RequestRules


@pytest.mark.parametrize("name", ["prompt_embeds\n", "documents\n", "Documents", "documents "])
def test_an_extra_field_name_is_checked_whole(name):
    with pytest.raises(pydantic.ValidationError):
        RequestRules.model_validate({"extra_fields": [name]})


def test_a_plain_name_is_allowed_and_prompt_embeds_never():
    assert RequestRules.model_validate({"extra_fields": ["documents"]}).extra_fields == ("documents",)
    with pytest.raises(pydantic.ValidationError):
        RequestRules.model_validate({"extra_fields": ["prompt_embeds"]})


def test_kv_transfer_params_cannot_be_allowed():
    # vLLM's disaggregated-prefill parameters point the engine at KV blocks computed elsewhere
    # (another request's, on a prefill node): a context no guardrail has read
    with pytest.raises(pydantic.ValidationError):
        RequestRules.model_validate({"extra_fields": ["kv_transfer_params"]})
