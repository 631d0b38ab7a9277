"""The data-class header only raises a request's class, however many times it is sent."""

from __future__ import annotations

import pytest

from gatehouse.api.errors import ApiError
from gatehouse.api.inference import claimed_class


def test_every_header_value_counts_not_just_the_first():
    # a proxy appends "restricted" after the client's own "public": the request is restricted
    assert claimed_class(["public", "restricted"], "internal") == "restricted"
    assert claimed_class(["public, confidential"], "internal") == "confidential"
    assert claimed_class([" Public "], "internal") == "internal"  # never lowered
    assert claimed_class([], "public") == "public"


@pytest.mark.parametrize("values", [["secret"], ["public", "secret"], [""], ["public,"]])
def test_any_value_that_is_not_a_class_is_refused(values):
    with pytest.raises(ApiError) as refused:
        claimed_class(values, "internal")
    assert refused.value.status == 400 and refused.value.code == "invalid_data_class"
