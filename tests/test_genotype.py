import json

import pytest
import torch

from img2vid import Genotype, ImageToVideo


def test_construct_parse_and_str_round_trip():
    g = Genotype([("translate_x", 0.1), ("rotate", 10.0)])
    assert Genotype.parse("translate_x:0.1,rotate:10") == g
    assert Genotype.parse(str(g)) == g
    assert Genotype(str(g)) == g
    assert str(g) == "translate_x:0.1,rotate:10.0"
    assert len(g) == 2
    assert list(g) == [("translate_x", 0.1), ("rotate", 10.0)]
    assert g[1] == ("rotate", 10.0)
    assert eval(repr(g), {"Genotype": Genotype}) == g  # repr is the constructor call


def test_whitespace_and_bare_ops():
    g = Genotype.parse(" identity , invert, translate_y : -0.25 ")
    assert list(g) == [("identity", 0.0), ("invert", 0.0), ("translate_y", -0.25)]
    assert str(g) == "identity,invert,translate_y:-0.25"
    assert Genotype.parse("identity:0") == Genotype.parse("identity")


def test_magnitudes_are_floats():
    g = Genotype.parse("posterize:4,rotate:3")
    assert all(type(m) is float for _, m in g)


def test_order_matters():
    assert Genotype.parse("rotate:5,translate_x:0.1") != Genotype.parse("translate_x:0.1,rotate:5")


def test_json_round_trip():
    g = Genotype.parse("scale:1.1,shear_x:-4.5,equalize")
    text = g.to_json()
    assert json.loads(text) == {"steps": [["scale", 1.1], ["shear_x", -4.5], ["equalize", 0.0]]}
    assert Genotype.from_json(text) == g


def test_tensor_magnitude_is_kept_and_reads_as_its_value():
    m = torch.tensor(0.1, requires_grad=True)
    g = Genotype([("translate_x", m)])
    assert g[0][1] is m
    assert str(g) == f"translate_x:{float(m.detach())!r}"
    assert g == Genotype([("translate_x", float(m.detach()))])
    assert Genotype.from_json(g.to_json()) == g
    # and the gradient reaches it through ImageToVideo
    ImageToVideo(g, T=3)(torch.rand(1, 1, 8, 8)).sum().backward()
    assert m.grad is not None and m.grad != 0


def test_hash_agrees_with_equality():
    assert len({Genotype.parse("rotate:5"), Genotype([("rotate", 5)]), Genotype.parse("rotate:6")}) == 2


def test_hash_stays_put_when_a_tensor_magnitude_is_learnt():
    # A search updates a magnitude in place; the genotype must not vanish from the sets and dicts
    # that hold it, and must still meet equal genotypes there.
    m = torch.tensor(5.0)
    g = Genotype([("rotate", m)])
    seen, scores = {g}, {g: 0.9}
    with torch.no_grad():
        m += 2.5
    assert g in seen and scores[g] == 0.9
    assert Genotype.parse("rotate:7.5") in seen and Genotype.parse("rotate:5") not in seen
    assert hash(g) == hash(Genotype.parse("rotate:7.5"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty genotype string"),
        ("   ", "empty genotype string"),
        ("rotate:5,,scale:1.1", "empty step"),
        ("warp:1", "unknown op 'warp'; valid ops are .*'translate_x'"),
        ("rotate:nan", "must be finite"),
        ("rotate:inf", "must be finite"),
        ("rotate:ten", "not a number"),
        ("rotate:1:2", "not a number"),
        ("identity:1", "takes no magnitude"),
        ("scale:-1", "must lie in"),
        ("__import__('os').system('true')", "unknown op"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ValueError, match=message):
        Genotype.parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a genotype JSON document"),
        ("[]", r'a genotype JSON document is \{"steps"'),
        ('{"steps": 3}', r'a genotype JSON document is \{"steps"'),
        ('{"steps": [["rotate"]]}', r'each JSON step is \["op", magnitude\], got \[\'rotate\'\]'),
        ('{"steps": [["rotate", "5"]]}', r"each JSON step is .*'5'"),
        ('{"steps": [["rotate", true]]}', r"each JSON step is .*True"),
        ('{"steps": []}', "at least one step"),
        ('{"steps": [["nope", 1]]}', "unknown op 'nope'; valid ops are"),
    ],
)
def test_from_json_errors(text, message):
    with pytest.raises(ValueError, match=message):
        Genotype.from_json(text)


def test_constructor_errors():
    with pytest.raises(ValueError, match="at least one step"):
        Genotype([])
    with pytest.raises(ValueError, match=r"\(op, magnitude\)"):
        Genotype([("rotate", 1.0, 2.0)])
    with pytest.raises(ValueError, match="0-d tensor"):
        Genotype([("rotate", torch.ones(3))])


def test_huge_integer_magnitudes_are_value_errors():
    # float() of an integer past 1.8e308 overflows (OverflowError); a genotype says what is wrong instead
    with pytest.raises(ValueError, match="magnitude of 'rotate' must be finite, got a number too large for a float"):
        Genotype([("rotate", 10**400)])
    with pytest.raises(ValueError, match="too large for a float"):
        Genotype.from_json('{"steps": [["rotate", 1' + "0" * 400 + "]]}")
    with pytest.raises(ValueError, match="not a genotype JSON document"):  # past Python's 4300-digit limit
        Genotype.from_json('{"steps": [["rotate", 1' + "0" * 5000 + "]]}")
    with pytest.raises(ValueError, match="must be finite"):
        Genotype.parse("rotate:1" + "0" * 400)
