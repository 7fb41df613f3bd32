"""The frame-aware stack diff is a correct JSON patch for any change of the stack."""

from __future__ import annotations

import json

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from voicecalm.tracker.conversation import Conversation, stack_patch

values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3))
keys = st.sampled_from(["step_id", "flow_id", "collect", "a/b", "c~d", "names", "frame_type"])
frames = st.builds(
    lambda frame_id, fields: {"frame_id": frame_id, **fields},
    st.sampled_from(["f1", "f2", "f3", "f4", "f5"]),
    st.dictionaries(keys, values, max_size=4),
)
stacks = st.lists(frames, max_size=6)


@settings(max_examples=400, deadline=None)
@given(stacks, stacks)
def test_patch_turns_old_into_new(old: list[dict], new: list[dict]) -> None:
    patch = stack_patch(old, new)
    assert jsonpatch.apply_patch(old, json.loads(json.dumps(patch))) == new


def test_stack_changes_replay_from_events() -> None:
    conversation = Conversation("x", {})
    stacks_seen = []
    for stack in (
        [{"frame_id": "a", "step_id": "START"}],
        [{"frame_id": "a", "step_id": "ask"}, {"frame_id": "b", "collect": "x"}],
        [{"frame_id": "a", "step_id": "next"}],
        [],
    ):
        conversation.set_stack(stack)
        stacks_seen.append(stack)
        replayed = Conversation.from_events("x", {}, conversation.events)
        assert replayed.stack == stack
    assert len(conversation.events) == 4
