from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mendlab.conversation import Conversation, ConversationTree, read_jsonl, write_jsonl
from mendlab.errors import InputError
from mendlab.models import Message


def _conv() -> Conversation:
    return Conversation(
        (Message("system", "sys"), Message("user", "u1"), Message("assistant", "a1"), Message("user", "u2")),
        model="m",
    )


def test_append_keeps_branch_fork_makes_child() -> None:
    c = _conv()
    longer = c.append(Message("assistant", "a2"))
    assert longer.id == c.id and len(longer) == 5 and len(c) == 4
    f = longer.fork(2)
    assert f.parent == c.id and f.fork_turn == 2 and [m.content for m in f.messages] == ["sys", "u1"]
    with pytest.raises(IndexError):
        c.fork(9)


def test_edit_past_user_turn_drops_the_rest() -> None:
    c = _conv()
    e = c.edit(1, "u1 edited")
    assert [m.content for m in e.messages] == ["sys", "u1 edited"]
    assert e.parent == c.id and e.fork_turn == 1
    assert c.messages[1].content == "u1"  # the original is untouched


def test_transplant_marks_origin_and_round_trips() -> None:
    c = _conv().transplant("action.add_calendar_entry(...)", origin="other-model")
    assert c.messages[-1] == Message("assistant", "action.add_calendar_entry(...)", origin="other-model")
    with pytest.raises(ValueError):
        c.transplant("again", origin="x")
    buf = io.StringIO()
    write_jsonl([c], buf)
    back = Conversation.from_json(json.loads(buf.getvalue()))
    assert back.messages == c.messages and back.id == c.id and back.model == "m"


def test_tree_walks_branches() -> None:
    root = _conv()
    kids = [root.fork(2) for _ in range(3)]
    grandchild = kids[0].append(Message("user", "x")).fork(1)
    tree = ConversationTree.of([root, *kids, grandchild])
    assert [c.id for c in tree.roots()] == [root.id]
    assert {c.id for c in tree.children(root.id)} == {k.id for k in kids}
    depths = [d for d, _ in tree.walk(root.id)]
    assert sorted(depths) == [0, 1, 1, 1, 2]


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text(
        '{"messages": [{"role": "user", "content": "hi"}]}\n\n{"messages": [{"role": "bot", "content": "x"}]}\n'
    )
    with pytest.raises(InputError, match=r"in.jsonl:3: messages\[0\].role"):
        read_jsonl(p)
    p.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n')
    with pytest.raises(InputError, match=r"in.jsonl:2: invalid JSON"):
        read_jsonl(p)
    p.write_text('{"messages": []}\n')
    with pytest.raises(InputError, match=r"in.jsonl:1: field 'messages'"):
        read_jsonl(p)
    p.write_text('{"messages": [{"role": "user", "content": "hi"}], "scenario": "calendar"}\n')
    (conv,) = read_jsonl(p)
    assert conv.meta == {"scenario": "calendar"}
