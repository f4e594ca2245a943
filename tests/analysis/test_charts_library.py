"""The vendored chart library ships in the package with its licence and can be inlined."""

from engine.analysis import charts_library


def test_the_vendored_build_is_the_named_version_with_its_licence():
    head = charts_library.script()[:400]
    assert f"Lightweight Charts™ v{charts_library.VERSION}" in head
    assert "Apache License" in head
    assert f"v{charts_library.VERSION}" in charts_library.notice()


def test_the_inline_script_cannot_close_its_element_early():
    inline = charts_library.inline_script()
    assert inline.startswith("<script>") and inline.endswith("</script>")
    assert "</script" not in inline[len("<script>"):-len("</script>")]
    assert "LightweightCharts" in inline
