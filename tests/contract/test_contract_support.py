"""The shape comparison the contract tests rely on must notice real differences."""
import pytest

from contract_support import shape_problems

RECORDED = {"id": "x", "n": 1, "f": 1.0, "none": None, "flag": True, "items": [{"a": 1}, {"a": 2}],
            "config": ["INT", {"min": 0}], "empty": []}


@pytest.mark.parametrize("change", [
    lambda d: d.pop("n"),                              # missing key
    lambda d: d.update(extra=1),                       # unexpected key
    lambda d: d.update(n=1.0),                         # int vs float
    lambda d: d.update(f=1),
    lambda d: d.update(none="value"),                  # null vs string
    lambda d: d.update(flag=1),                        # bool vs int
    lambda d: d.update(items=[{"a": "1"}]),            # list item of another shape
    lambda d: d.update(items=[]),                      # recorded items, none here
    lambda d: d.update(config=["INT"]),                # positional list of another length
    lambda d: d.update(config=[{"min": 0}, "INT"]),    # positions swapped
    lambda d: d.update(empty={}),
])
def test_differences_are_reported(change):
    actual = {k: (list(v) if isinstance(v, list) else v) for k, v in RECORDED.items()}
    change(actual)
    assert shape_problems(actual, RECORDED)


def test_equal_shapes_pass_whatever_the_values():
    actual = dict(RECORDED, id="y", n=7, items=[{"a": 5}, {"a": 6}, {"a": 7}], empty=[1, "anything"])
    assert shape_problems(actual, RECORDED) == []


def test_maps_compare_values_not_keys():
    recorded = {"c9a5": {"outputs": {"2": {"images": []}}}}
    assert shape_problems({"ffff": {"outputs": {"9": {"images": []}}}}, recorded, [(), ("*", "outputs")]) == []
    assert shape_problems({"ffff": {"outputs": {"9": {"text": []}}}}, recorded, [(), ("*", "outputs")])
    assert shape_problems({"ffff": {"outputs": {}}}, recorded, [(), ("*", "outputs")])
    assert shape_problems({"ffff": {"outputs": {"9": {"images": []}}}}, recorded)  # without the map: ids differ
