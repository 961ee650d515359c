"""Prompt building from stored messages (DESIGN §5 result placement)."""

from __future__ import annotations

from typing import Any

from shoal.engine.prompt import INTERRUPTED_RESULT, build_prompt, visible_messages


def msg(mid: str, type: str, content: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"message_id": mid, "type": type, "content": content, "metadata": metadata}


def call(cid: str, name: str = "f") -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": "{}"}}


def tool(mid: str, cid: str, output: str, fmt: str = "native", ok: bool = True) -> dict[str, Any]:
    content = {"role": "tool", "tool_call_id": cid, "name": "f", "content": output}
    return msg(mid, "tool", content, success=ok, call_format=fmt, duration_ms=1)


def test_native_and_xml_results_are_placed_as_providers_require() -> None:
    stored = [
        msg("u", "user", {"role": "user", "content": "go"}),
        msg("a", "assistant", {"role": "assistant", "content": "", "tool_calls": [call("n1")]}),
        tool("t1", "n1", "native out"),
        tool("t2", "call_x", "xml <out> & more", fmt="xml", ok=False),
    ]
    prompt = build_prompt("SYS", stored)
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "tool", "user"]
    assert prompt[2]["content"] is None and prompt[2]["tool_calls"][0]["id"] == "n1"
    assert prompt[3] == {"role": "tool", "tool_call_id": "n1", "name": "f", "content": "native out"}
    assert prompt[4]["content"] == (
        '<tool_result name="f" id="call_x" success="false">\nxml <out> & more\n</tool_result>'
    )


def test_several_xml_results_form_one_user_message() -> None:
    stored = [
        msg("a", "assistant", {"role": "assistant", "content": "<function_calls>…"}),
        tool("t1", "call_1", "one", fmt="xml"),
        tool("t2", "call_2", "two", fmt="xml"),
    ]
    prompt = build_prompt("S", stored)
    assert [m["role"] for m in prompt] == ["system", "assistant", "user"]
    assert prompt[2]["content"].count("<tool_result") == 2


def test_missing_and_orphan_results() -> None:
    stored = [
        tool("t0", "orphan", "lost"),
        msg("a", "assistant", {"role": "assistant", "content": "x", "tool_calls": [call("c1")]}),
        msg("u", "user", {"role": "user", "content": "next"}),
    ]
    prompt = build_prompt("S", stored)
    assert prompt[1]["role"] == "user" and "orphan" in prompt[1]["content"]
    assert prompt[3] == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "f",
        "content": INTERRUPTED_RESULT,
    }


def test_summary_placement_and_nesting() -> None:
    base = [msg(f"m{i}", "user", {"role": "user", "content": f"m{i}"}) for i in range(6)]
    s1 = msg(
        "s1",
        "summary",
        {"role": "system", "content": "S1"},
        summarized_message_ids=["m0", "m1", "m2"],
    )
    assert [m["message_id"] for m in visible_messages([*base, s1])] == ["s1", "m3", "m4", "m5"]
    s2 = msg(
        "s2", "summary", {"role": "system", "content": "S2"}, summarized_message_ids=["s1", "m3"]
    )
    assert [m["message_id"] for m in visible_messages([*base, s1, s2])] == ["s2", "m4", "m5"]
    gone = msg(
        "s3", "summary", {"role": "system", "content": "S3"}, summarized_message_ids=["deleted"]
    )
    assert [m["message_id"] for m in visible_messages([*base[:1], gone])] == ["m0", "s3"]


def test_clipping_marker_names_the_message() -> None:
    stored = [
        msg("a", "assistant", {"role": "assistant", "content": "", "tool_calls": [call("c")]}),
        tool("big", "c", "x" * 5000),
    ]
    prompt = build_prompt("S", stored, clip_chars=600)
    assert len(prompt[2]["content"]) < 800
    assert 'message_id "big"' in prompt[2]["content"]
