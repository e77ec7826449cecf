from __future__ import annotations

import numpy as np
import pytest

from modelplane.cli.inference import parse_input
from modelplane.cli.routing import parse_target


def test_parse_target_accepts_versions_aliases_and_weights() -> None:
    assert parse_target("fraud:3") == ("fraud", 3, 100)
    assert parse_target("fraud:3=25") == ("fraud", 3, 25)
    assert parse_target("fraud@prod=75") == ("fraud", "prod", 75)


def test_parse_target_rejects_a_target_without_version_or_alias() -> None:
    with pytest.raises(ValueError, match="expected MODEL:VERSION"):
        parse_target("fraud")


def test_parse_input_reads_json_with_an_optional_dtype() -> None:
    name, array = parse_input("x=[[1, 2], [3, 4]]")
    assert name == "x" and array.dtype == np.float32 and array.shape == (2, 2)
    name, array = parse_input("ids:int64=[1, 2, 3]")
    assert name == "ids" and array.dtype == np.int64


def test_parse_input_names_the_input_on_bad_json() -> None:
    with pytest.raises(ValueError, match="input 'x'"):
        parse_input("x=[1, 2")
