import pytest

from genreg_app.url_state import float_in, int_in, list_of, one_of


@pytest.mark.parametrize("text", ["-5", "1e99", "5.0", "", " 3", "٣", "9" * 13, "1001"])
def test_int_in_refuses_what_is_not_a_plain_integer_in_range(text):
    with pytest.raises(ValueError):
        int_in(0, 1000)(text)


def test_parsers_accept_their_values():
    assert int_in(-10, 10)("-5") == -5 and int_in(0, 1000)("1000") == 1000
    assert float_in(0, 10)("1.5") == 1.5
    assert one_of([2, 3])("3") == 3 and one_of(["ddim", "ddpm"])("ddpm") == "ddpm"
    assert list_of(range(10))("1,4") == [1, 4] and list_of(range(10))("") == []


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "11", "✓", "1,5"])
def test_float_in_refuses_non_finite_and_out_of_range(text):
    with pytest.raises(ValueError):
        float_in(0, 10)(text)


def test_one_of_refuses_paths_and_near_misses():
    for text in ("../../x", "DDIM", "ddim ", "ddim\x00"):
        with pytest.raises(ValueError):
            one_of(["ddim", "ddpm"])(text)
    with pytest.raises(ValueError, match="not one of the 20 known values"):
        one_of(range(20))("x")
    with pytest.raises(ValueError):
        list_of(range(10))("1,12")
