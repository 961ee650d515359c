from __future__ import annotations

from shoal.llm.types import merge_thinking_blocks


def test_merge_thinking_blocks() -> None:
    deltas = [
        {"type": "thinking", "thinking": "a", "index": 0},
        {"type": "thinking", "thinking": "b", "index": 0},
        {"type": "thinking", "thinking": "", "signature": "s", "index": 0},
        {"type": "redacted_thinking", "data": "zz", "index": 1},
        {"type": "thinking", "thinking": "c", "index": 2},
    ]
    assert merge_thinking_blocks(deltas) == [
        {"type": "thinking", "thinking": "ab", "signature": "s"},
        {"type": "redacted_thinking", "data": "zz"},
        {"type": "thinking", "thinking": "c"},
    ]
    assert merge_thinking_blocks([]) == []
