"""The incremental XML tool-call parser, including adversarial input."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.engine.xml_parser import XmlToolCall, XmlToolCallParser, typed_value


def parse(text: str, chunk: int = 1) -> list[XmlToolCall]:
    parser = XmlToolCallParser()
    out: list[XmlToolCall] = []
    for start in range(0, len(text), chunk):
        out += parser.feed(text[start : start + chunk])
    return out + parser.finish()


def block(*invokes: str) -> str:
    return "<function_calls>\n" + "\n".join(invokes) + "\n</function_calls>"


def invoke(name: str, **params: str) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items())
    return f'<invoke name="{name}">\n{body}</invoke>'


def test_one_call_in_any_chunking() -> None:
    text = "Before " + block(invoke("read_file", path="a.txt")) + " after"
    for size in (1, 2, 3, 5, 8, 13, 1000):
        calls = parse(text, size)
        assert [(c.name, c.arguments) for c in calls] == [("read_file", {"path": "a.txt"})]
        assert re.fullmatch(r"call_[0-9a-f]{24}", calls[0].id)


def test_several_invokes_and_blocks() -> None:
    text = block(invoke("a", x="1"), invoke("b", y="two")) + "text" + block(invoke("c"))
    assert [c.name for c in parse(text, 4)] == ["a", "b", "c"]


def test_calls_are_returned_as_soon_as_closed() -> None:
    parser = XmlToolCallParser()
    assert parser.feed(block(invoke("a", x="1"))[: -len("</function_calls>")]) != []
    assert parser.in_call


def test_typed_values() -> None:
    assert typed_value(' {"a": [1, 2]} ') == {"a": [1, 2]}
    assert typed_value("[1, 2]") == [1, 2]
    assert typed_value("true") is True and typed_value("false") is False
    assert typed_value("42") == 42 and typed_value("-1.5") == -1.5
    assert typed_value("1e3") == 1000.0
    assert typed_value("007") == "007"
    assert typed_value("{not json}") == "{not json}"
    assert typed_value("hello") == "hello"
    assert typed_value("null") == "null"


def test_raw_text_is_kept_for_text_parameters() -> None:
    [call] = parse(block(invoke("w", content="\n  42  \n")))
    assert call.arguments["content"] == 42
    assert call.raw_arguments["content"] == "  42  "


def test_entities_are_unescaped() -> None:
    [call] = parse(block(invoke("w", text="a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#39;")))
    assert call.arguments["text"] == "a <b> & \"c\" 'd'"


def test_closing_parameter_tag_inside_a_value() -> None:
    value = "x </parameter> y </parameter>z"
    [call] = parse(block(invoke("w", content=value, path="p")), 3)
    assert call.arguments == {"content": value, "path": "p"}


def test_closing_parameter_tag_at_the_very_end_of_the_stream() -> None:
    text = '<function_calls><invoke name="w"><parameter name="a">v</parameter>'
    [call] = parse(text)
    assert call.error is None and call.arguments == {"a": "v"}


def test_missing_closing_invoke_is_accepted() -> None:
    text = '<function_calls><invoke name="w"><parameter name="a">1</parameter></function_calls>'
    [call] = parse(text)
    assert call.name == "w" and call.arguments == {"a": 1}


def test_unclosed_value_is_reported_not_executed() -> None:
    [call] = parse('<function_calls><invoke name="w"><parameter name="a">never closed', 2)
    assert call.error is not None and "cut off" in call.error


def test_unclosed_tags_without_names_are_dropped() -> None:
    for text in ("<function_calls>", "<function_calls><invoke", "<function_calls><inv", "<func"):
        assert parse(text) == []


def test_malformed_tags_are_skipped() -> None:
    text = (
        "<function_calls><invoke nam='x'><invoke name=\"ok\">"
        '<parameter>bad</parameter><parameter name="p">1</parameter></invoke></function_calls>'
    )
    calls = parse(text, 2)
    assert [(c.name, c.arguments) for c in calls] == [("ok", {"p": 1})]


def test_text_outside_blocks_is_ignored() -> None:
    assert parse('<invoke name="x"></invoke> <parameter name="a">1</parameter>') == []


def test_huge_parameter() -> None:
    value = "line of text\n" * 200_000  # 2.6 MB
    [call] = parse(block(invoke("w", content=value)), 4096)
    assert call.raw_arguments["content"] == value.removesuffix("\n")


def test_single_quoted_names_and_spacing() -> None:
    text = "<function_calls><invoke name = 'x' ><parameter name='a' >1</parameter></invoke>"
    [call] = parse(text)
    assert call.name == "x" and call.arguments == {"a": 1}


TAGS = st.sampled_from(
    [
        "<function_calls>",
        "</function_calls>",
        '<invoke name="t">',
        "<invoke name='u'>",
        "</invoke>",
        '<parameter name="p">',
        "<parameter name='q'>",
        "</parameter>",
        "<",
        ">",
        "&amp;",
        "&#x;",
        "{",
        "[1,",
        "true",
        "\n",
        " ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TAGS, st.text(max_size=8)), max_size=60), st.integers(1, 9))
def test_fuzz_never_raises(pieces: list[str], chunk: int) -> None:
    calls = parse("".join(pieces), chunk)
    for call in calls:
        assert isinstance(call.name, str)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(1, 7))
def test_fuzz_arbitrary_text(text: str, chunk: int) -> None:
    parse(text, chunk)
    parse('<function_calls><invoke name="x"><parameter name="v">' + text, chunk)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<&"), max_size=200))
def test_round_trip_of_plain_values(value: str) -> None:
    [call] = parse(block(invoke("w", v=value)), 3)
    expected = value
    if expected.startswith("\n"):
        expected = expected[1:]
    if expected.endswith("\n"):
        expected = expected[:-1]
    assert call.raw_arguments["v"] == expected
