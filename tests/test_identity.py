import pytest

from graph.identity import BadIdentity, normalize_identity, same_identity


@pytest.mark.parametrize("variant", [
    "lead@acme.example", " Lead@ACME.example ", "lead\u200b@acme.example",
    "\ufeffl\u200dead@acme.example", "ｌｅａｄ＠ａｃｍｅ．ｅｘａｍｐｌｅ",
    "LEAD@acme.example\u2060",
])
def test_variants_of_one_address_are_the_same_person(variant: str) -> None:
    assert normalize_identity(variant) == "lead@acme.example"
    assert same_identity(variant, "lead@acme.example")


@pytest.mark.parametrize("bad", ["", "   ", "\u200b\u200c", "lead@acme\x00.example",
                                 "lead\n@acme.example", "lead\u2028@acme.example"])
def test_empty_or_control_identities_are_refused(bad: str) -> None:
    with pytest.raises(BadIdentity):
        normalize_identity(bad)


def test_different_people_stay_different() -> None:
    assert not same_identity("lead@acme.example", "lead@globex.example")
