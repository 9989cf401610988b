"""What users read for a value: never Python's None."""

from modelport.common.display import settings_text, shown


def test_none_reads_as_the_callers_word_at_any_depth() -> None:
    assert shown(None) == "default" and shown(None, "–") == "–" and shown(0) == "0" and shown(False) == "False"
    assert shown([None, 2]) == "[default, 2]" and shown((1.5, None), "–") == "[1.5, –]"
    assert settings_text({"openvino.threads": None, "device": "CPU"}) == "openvino.threads=default, device=CPU"
    assert settings_text({"a": None}, "`{}={}`") == "`a=default`" and settings_text({}) == ""
