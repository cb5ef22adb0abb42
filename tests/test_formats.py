"""Check-digit formats: real S10, SSCC, GTIN and ISO 6346 numbers pass, a wrong digit is rejected, one look-alike
in the wrong character class is corrected, two are not."""
import pytest

from daemon.formats import CHECK_DIGIT, FORMATS, Checked, check_line, gs1_mod10_is_valid, s10_check_digit

ALL = tuple(FORMATS)


@pytest.mark.parametrize("text, fmt", [
    ("EE123456785CN", "s10"),          # the UPU S10 standard's own example serial 12345678 -> 5
    ("RR473124829GB", "s10"),
    ("CP000000005US", "s10"),          # serial 0: 11 - 0 = 11 -> 5
    ("340123451234567895", "sscc"),    # GS1's SSCC example
    ("(00) 340123451234567895", "sscc"),
    ("4006381333931", "gtin"),         # GTIN-13
    ("96385074", "gtin"),              # GTIN-8
    ("036000291452", "gtin"),          # UPC-A
    ("10614141000415", "gtin"),        # GTIN-14
    ("CSQU3054383", "iso6346"),        # ISO 6346's example
    ("CSQU 305438 3", "iso6346"),
    ("MSKU 907032-3", "iso6346"),
])
def test_real_numbers_pass_their_check_digit(text, fmt):
    assert check_line(text, ALL) == Checked(fmt, text)


def test_s10_check_digit_special_cases():
    assert s10_check_digit("12345678") == "5"
    assert s10_check_digit("00000000") == "5"        # remainder 0: 11 -> 5
    assert s10_check_digit("00000008") == "0"        # 56 mod 11 = 1: 11 - 1 = 10 -> 0
    assert s10_check_digit("00000001") == "4"        # weight 7: 11 - 7
    assert gs1_mod10_is_valid("4006381333931") and not gs1_mod10_is_valid("4006381333932")


@pytest.mark.parametrize("text", ["EE123456784CN", "EE923456785CN", "340123451234567894", "4006381333932",
                                  "CSQU3054384", "4OO6381333931"])
def test_a_wrong_digit_or_two_look_alikes_is_rejected(text):
    assert check_line(text, ALL) == CHECK_DIGIT


@pytest.mark.parametrize("read, fixed, fmt", [
    ("EE12345678SCN", "EE123456785CN", "s10"),     # S read for the check digit 5
    ("EE1234567B5CN", "EE123456785CN", "s10"),     # B for 8
    ("EEI23456785CN", "EE123456785CN", "s10"),     # I for 1
    ("34O123451234567895", "340123451234567895", "sscc"),
    ("4006381333G31", None, "gtin"),               # G -> 6 does not pass: rejected
    ("C5QU3054383", "CSQU3054383", "iso6346"),     # 5 read for S in the owner code (covered by the check digit)
    ("CSQU 3O5438 3", "CSQU 305438 3", "iso6346"), # the read's spacing is kept
])
def test_one_look_alike_in_the_wrong_class_is_corrected(read, fixed, fmt):
    got = check_line(read, ALL)
    if fixed is None:
        assert got == CHECK_DIGIT
    else:
        assert got == Checked(fmt, fixed, corrected_from=read)


def test_text_in_no_formats_shape_is_left_to_the_patterns():
    for text in ("SF7300000000", "2026-11-23", "上海市浦东新区", "EE12345678CN", ""):
        assert check_line(text, ALL) is None


def test_only_the_named_formats_are_checked():
    assert check_line("4006381333932", ("s10",)) is None
    assert check_line("4006381333932", ("gtin",)) == CHECK_DIGIT


def test_config_names_the_key_of_an_unknown_format_or_code():
    from daemon import config
    from daemon.codes import CODE_FORMATS
    cfg = config.from_dict({"cameras": [{"name": "c", "accept_formats": ["s10", "gtin"], "codes": ["DataMatrix"]}]})
    assert cfg.cameras[0].accept_formats == ("s10", "gtin") and cfg.cameras[0].codes == ("DataMatrix",)
    assert config.from_dict({}).cameras[0].codes == CODE_FORMATS      # every format by default (issue 33)
    with pytest.raises(config.ConfigError) as exc:
        config.from_dict({"cameras": [{"name": "c", "accept_formats": ["s10", "upc"]}]})
    assert exc.value.key == "cameras[0].accept_formats[1]"
    with pytest.raises(config.ConfigError) as exc:
        config.from_dict({"cameras": [{"name": "c", "codes": ["Code128", "QR"]}]})
    assert exc.value.key == "cameras[0].codes[1]"


def test_fullwidth_and_superscript_digits_are_no_identifier_digits():
    """Found from outside: the recognizer's dictionary has ０-９, ² and ³; '４006381333931' passed as a GTIN with the
    fullwidth digit left in the published text."""
    from daemon.formats import check_line, gs1_mod10_is_valid

    assert not gs1_mod10_is_valid("\uff14006381333931") and gs1_mod10_is_valid("4006381333931")
    assert check_line("\uff14006381333931", ("gtin",)) is None          # not in a GTIN's shape: left to the patterns
    assert check_line("4006381333931", ("gtin",)).format == "gtin"
