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
