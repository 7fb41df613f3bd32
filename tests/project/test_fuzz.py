"""Fuzzing the project loader: a broken flow file gives a `ProjectError`, never a crash.

Seeds are valid flow files (the example assistant's flows and the default patterns, placed in
the example project's flow folder). Each example mutates one seed, either on its parsed YAML tree
(keys, values, list items, `next` targets, step ids) or on its raw text (characters, lines,
indentation), writes it into a fresh copy of the example project and loads that project.
`load_project` may succeed; if it fails it must fail with a `ProjectError` whose errors all have
a message and a location inside the project (`file:line:col: message` or `file: message`).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from voicecalm.project import Location, ProjectError, load_project

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PATTERNS = REPO / "voicecalm" / "project" / "defaults" / "patterns.yml"
FLOW_FOLDER = "flows"  # the example's config.yml reads flows from here


class Seed:
    """A valid flow file; `target` is the project-relative path its (mutated) text is written to.

    A plain class, not a dataclass, so that hypothesis prints the short repr, not the whole text.
    """

    def __init__(self, target: str, text: str, origin: str) -> None:
        self.target, self.text, self.origin = target, text, origin

    def __repr__(self) -> str:
        return f"Seed({self.origin!r} -> {self.target!r})"


def _seeds() -> list[Seed]:
    seeds = [
        Seed(f"{FLOW_FOLDER}/{path.name}", path.read_text(encoding="utf-8"), f"{FLOW_FOLDER}/{path.name}")
        for path in sorted((REPO / FLOW_FOLDER).glob("*.yml"))
    ]
    # The default patterns replace the example's own patterns file (same flow ids would clash).
    seeds.append(Seed(f"{FLOW_FOLDER}/patterns.yml", DEFAULT_PATTERNS.read_text(encoding="utf-8"), "<defaults>/patterns.yml"))
    return seeds


SEEDS = _seeds()


@pytest.fixture(scope="module")
def base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of the example project's config, domain and flows."""
    root = tmp_path_factory.mktemp("fuzz_base") / "project"
    root.mkdir()
    shutil.copy2(REPO / "config.yml", root / "config.yml")
    shutil.copytree(REPO / "domain", root / "domain")
    shutil.copytree(REPO / FLOW_FOLDER, root / FLOW_FOLDER)
    return root


def _check_load(base: Path, seed: Seed, content: str | bytes) -> None:
    """Load a fresh copy of the project with `content` in the seed's file; only ProjectError may escape."""
    with tempfile.TemporaryDirectory(prefix="vc_fuzz_") as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(base, root)
        target = root / seed.target
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        try:
            load_project(root)
        except ProjectError as error:
            _assert_well_formed(error, root.resolve())
            outcome = "ProjectError"
        else:
            outcome = "loaded"
        if currently_in_test_context():
            event(outcome)  # shown by --hypothesis-show-statistics


def _assert_well_formed(error: ProjectError, root: Path) -> None:
    assert error.errors, "a ProjectError must carry at least one error"
    for problem in error.errors:
        assert isinstance(problem.message, str) and problem.message.strip(), f"error without a message: {problem!r}"
        location = problem.location
        text = str(problem)
        if isinstance(location, Location):
            assert location.line >= 1 and location.column >= 1, text
            assert text == f"{location.file}:{location.line}:{location.column}: {problem.message}", text
            file = location.file
        else:
            assert isinstance(location, Path), f"error without a location: {text!r}"
            assert text == f"{location}: {problem.message}", text
            file = location
        resolved = (root / file).resolve()
        assert resolved.is_relative_to(root) and resolved.exists(), f"error located outside the project: {text!r}"


def test_seeds_are_valid(base_project: Path) -> None:
    for seed in SEEDS:
        with tempfile.TemporaryDirectory(prefix="vc_fuzz_") as tmp:
            root = Path(tmp) / "project"
            shutil.copytree(base_project, root)
            (root / seed.target).write_text(seed.text, encoding="utf-8")
            load_project(root)  # raises if a seed is not valid


# --- values ----------------------------------------------------------------------------------

WEIRD_STRINGS = (
    "", " ", "{{", "}}", "{{ context.collect }}", "{% if %}", "${X}", "${VOICECALM_FUZZ_UNSET}", "${",
    "END", "START", "NEXT:x", "nowhere", "pattern_search", "pattern_internal_error", "pattern_collect_information",
    "utter_", "utter_nonexistent", "action_", "slots.", "slots.x.y", "context.", "slots.transfer_amount > 'a'",
    "((", "not", "a matches '('", "{'a' 'b'} contains slots.card_type", "true", "null", "-", ":", "#", "&a", "*a",
    "bad id!", "ünïcødé", "日本語", "\u202e\u200b", "\U0001f600", "\x00", "\x7f", "\ufeff", "\u2028", "a\nb",
    "x" * 300,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WEIRD_STRINGS),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=6), st.sampled_from(("if", "then", "else", "action", "next", 1, True, None))),
            children,
            max_size=3,
        ),
    ),
    max_leaves=6,
)

FLOW_KEYS = (
    "version", "flows", "description", "steps", "name", "if", "always_include_in_prompt", "nlu_trigger",
    "persisted_slots", "run_pattern_completed", "translation", "metadata", "on_activate",
)
STEP_KEYS = (
    "id", "next", "description", "metadata", "action", "collect", "set_slots", "noop", "link", "call",
    "utter", "ask_before_filling", "reset_after_flow_ends", "force_slot_filling", "rejections",
    "silence_timeout", "dtmf", "mcp_server", "mapping", "exit_if", "if", "then", "else", "intent",
    "length", "finish_on_key", "allow_audio_input", "confidence_threshold",
)
STEP_TYPE_KEYS = ("action", "collect", "set_slots", "noop", "link", "call")
KEYS = st.one_of(
    st.sampled_from(("bogus", "unknown_key") + FLOW_KEYS + STEP_KEYS),
    st.text(max_size=8),
    st.sampled_from((1, 0, True, None, 1.5)),
)
CONDITIONS = st.one_of(
    st.booleans(),
    st.sampled_from((
        "slots.authenticated", "not slots.authenticated", "slots.transfer_amount > 100",
        "slots.transfer_status = \"completed\"", "slots.unknown_slot is null", "context.collect is not null",
        "slots.{{context.collect}} is not null", "{{", "((", "slots.", "foo.bar", "slots.authenticated = 1",
        "slots.transfer_from_account = 'nonsense'", "slots.transfer_amount >", "", "# only a comment",
    )),
    st.text(max_size=20),
)


SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# No `explain` phase: on a failure it reruns the example hundreds of times (~30 s here).
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]


# --- tree helpers ----------------------------------------------------------------------------

Node = tuple[Any, Any, Any]  # (parent, key, value); parent None for the root


def _walk(node: Any, parent: Any = None, key: Any = None, seen: set[int] | None = None) -> Iterator[Node]:
    seen = set() if seen is None else seen
    yield parent, key, node
    if isinstance(node, (dict, list)):
        if id(node) in seen:  # aliased (duplicated) containers are walked once
            return
        seen.add(id(node))
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for child_key, child in items:
            yield from _walk(child, node, child_key, seen)


def _pick(data: st.DataObject, options: list[Any], label: str) -> Any:
    return options[data.draw(st.integers(0, len(options) - 1), label=label)]


def _is_step(node: Any) -> bool:
    return isinstance(node, dict) and any(isinstance(k, str) and k in STEP_TYPE_KEYS for k in node)


def _step_ids(tree: Any) -> list[Any]:
    return [value for parent, key, value in _walk(tree) if key == "id" and _is_step(parent)]


def _targets(data: st.DataObject, tree: Any) -> Any:
    ids = _step_ids(tree) or ["END"]
    inline_step = st.fixed_dictionaries(
        {"action": st.sampled_from(("utter_greet", "utter_nonexistent", "action_listen", "{{ context.utter }}"))},
        optional={"next": st.sampled_from(("END", "nowhere", *ids)), "id": st.sampled_from(("inline_x", *ids))},
    )
    branch_list = st.lists(
        st.one_of(
            st.fixed_dictionaries({"if": CONDITIONS, "then": st.one_of(st.sampled_from(("END", *ids)), st.lists(inline_step, max_size=2))}),
            st.fixed_dictionaries({"else": st.one_of(st.sampled_from(("END", *ids)), st.lists(inline_step, max_size=2))}),
            VALUES,
        ),
        max_size=4,
    )
    return data.draw(
        st.one_of(
            st.sampled_from(("END", "START", "NEXT:x", "nowhere", "", *ids)),
            st.just([]),
            st.lists(inline_step, max_size=2),
            branch_list,
            VALUES,
        ),
        label="next target",
    )


# --- tree mutations (each returns the possibly new root) -------------------------------------

def delete_key(tree: Any, data: st.DataObject) -> Any:
    dicts = [v for _, _, v in _walk(tree) if isinstance(v, dict) and v]
    if dicts:
        node = _pick(data, dicts, "dict")
        del node[_pick(data, list(node), "key")]
    return tree


def add_unknown_key(tree: Any, data: st.DataObject) -> Any:
    dicts = [v for _, _, v in _walk(tree) if isinstance(v, dict)]
    if dicts:
        node = _pick(data, dicts, "dict")
        node[data.draw(KEYS, label="new key")] = data.draw(VALUES, label="new value")
    return tree


def replace_value(tree: Any, data: st.DataObject) -> Any:
    nodes = list(_walk(tree))
    parent, key, _ = _pick(data, nodes, "node")
    value = data.draw(VALUES, label="replacement")
    if parent is None:
        return value
    parent[key] = value
    return tree


def rename_key(tree: Any, data: st.DataObject) -> Any:
    """Rename a key (flow ids included), keeping its position; may collide with a sibling."""
    dicts = [v for _, _, v in _walk(tree) if isinstance(v, dict) and v]
    if dicts:
        node = _pick(data, dicts, "dict")
        old = _pick(data, list(node), "key")
        flow_ids = [k for _, k, v in _walk(tree) if isinstance(v, dict) and "steps" in v]
        new = data.draw(st.one_of(KEYS, st.sampled_from(flow_ids or ["x"]), st.sampled_from(("transfer_money", "pattern_search", "authenticate_user"))), label="renamed key")
        items = [(new if k == old else k, v) for k, v in node.items()]
        node.clear()
        node.update(items)
    return tree


def duplicate_item(tree: Any, data: st.DataObject) -> Any:
    lists = [v for _, _, v in _walk(tree) if isinstance(v, list) and v]
    if lists:
        node = _pick(data, lists, "list")
        item = _pick(data, node, "item")
        if data.draw(st.booleans(), label="deep copy"):
            item = copy.deepcopy(item)  # otherwise the dump uses a YAML anchor and alias
        node.insert(data.draw(st.integers(0, len(node)), label="position"), item)
    return tree


def swap_items(tree: Any, data: st.DataObject) -> Any:
    lists = [v for _, _, v in _walk(tree) if isinstance(v, list) and len(v) > 1]
    if lists:
        node = _pick(data, lists, "list")
        i = data.draw(st.integers(0, len(node) - 1), label="i")
        j = data.draw(st.integers(0, len(node) - 1), label="j")
        node[i], node[j] = node[j], node[i]
    return tree


def change_next(tree: Any, data: st.DataObject) -> Any:
    holders = [v for _, _, v in _walk(tree) if _is_step(v) or (isinstance(v, dict) and ("then" in v or "else" in v))]
    if holders:
        node = _pick(data, holders, "step or branch")
        key = "then" if "then" in node else "else" if "else" in node else "next"
        node[key] = _targets(data, tree)
    return tree


def rename_step_id(tree: Any, data: st.DataObject) -> Any:
    """Give a step an id that is taken, reserved, odd, or not a string at all."""
    steps = [v for _, _, v in _walk(tree) if _is_step(v)]
    if steps:
        node = _pick(data, steps, "step")
        taken_or_reserved = st.sampled_from((*_step_ids(tree), "START", "END", "NEXT:a", "", "a b"))
        node["id"] = data.draw(st.one_of(taken_or_reserved, SCALARS), label="step id")
    return tree


def empty_list(tree: Any, data: st.DataObject) -> Any:
    lists = [v for _, _, v in _walk(tree) if isinstance(v, list) and v]
    if lists:
        _pick(data, lists, "list").clear()
    return tree


TREE_MUTATIONS: tuple[Callable[[Any, st.DataObject], Any], ...] = (
    delete_key, add_unknown_key, replace_value, rename_key, duplicate_item, swap_items,
    change_next, rename_step_id, empty_list,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=SUPPRESSED,
    phases=PHASES,
)
@given(data=st.data())
def test_tree_mutations_raise_only_project_error(base_project: Path, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS), label="seed")
    tree = yaml.safe_load(seed.text)
    for _ in range(data.draw(st.integers(1, 3), label="mutation count")):
        mutation = data.draw(st.sampled_from(TREE_MUTATIONS), label="mutation")
        tree = mutation(tree, data)
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    note(f"{seed.target}:\n{text}")
    _check_load(base_project, seed, text)


# --- text mutations --------------------------------------------------------------------------

YAML_CHARS = st.one_of(
    st.sampled_from((
        " ", "\t", "\n", "\r", ":", "-", "?", ",", "[", "]", "{", "}", "#", "&", "*", "!", "|", ">",
        "'", '"', "%", "@", "`", "\\", "\x00", "\x85", "\ufeff", "\u2028", "\U0001f600", "ß",
    )),
    st.characters(),
)


def _position(data: st.DataObject, text: str, label: str) -> int:
    return data.draw(st.integers(0, max(len(text) - 1, 0)), label=label)


def _line_index(data: st.DataObject, lines: list[str]) -> int:
    return data.draw(st.integers(0, max(len(lines) - 1, 0)), label="line")


def delete_char(text: str, data: st.DataObject) -> str:
    at = _position(data, text, "position")
    return text[:at] + text[at + 1:]


def insert_char(text: str, data: st.DataObject) -> str:
    at = _position(data, text, "position")
    return text[:at] + data.draw(YAML_CHARS, label="char") + text[at:]


def replace_char(text: str, data: st.DataObject) -> str:
    at = _position(data, text, "position")
    return text[:at] + data.draw(YAML_CHARS, label="char") + text[at + 1:]


def truncate(text: str, data: st.DataObject) -> str:
    return text[:_position(data, text, "length")]


def delete_line(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    if lines:
        del lines[_line_index(data, lines)]
    return "".join(lines)


def duplicate_line(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    if lines:
        i = _line_index(data, lines)
        lines.insert(_line_index(data, lines), lines[i])
    return "".join(lines)


def swap_lines(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    if len(lines) > 1:
        i, j = _line_index(data, lines), _line_index(data, lines)
        lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def insert_line(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    line = data.draw(
        st.one_of(
            st.sampled_from((
                "- action: utter_greet\n", "    bogus: 1\n", "      next: nowhere\n", "  extra_flow:\n",
                "---\n", "...\n", "%YAML 1.1\n", "key: &a [1, *a]\n", "    - id: START\n", "flows:\n",
                "  <<: *nothing\n", "      - if: slots.x\n", "!!python/object:os.system x\n", "\t- a\n",
            )),
            st.text(max_size=20).map(lambda t: t + "\n"),
        ),
        label="new line",
    )
    lines.insert(data.draw(st.integers(0, len(lines)), label="line"), line)
    return "".join(lines)


def change_indentation(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    if lines:
        i = _line_index(data, lines)
        change = data.draw(st.sampled_from(("indent", "dedent", "tab", "strip")), label="indentation")
        amount = data.draw(st.integers(1, 4), label="columns")
        line = lines[i]
        if change == "indent":
            line = " " * amount + line
        elif change == "dedent":
            line = line[min(amount, len(line) - len(line.lstrip(" "))):]
        elif change == "tab":
            line = "\t" + line.lstrip(" ")
        else:
            line = line.lstrip(" \t")
        lines[i] = line
    return "".join(lines)


TEXT_MUTATIONS: tuple[Callable[[str, st.DataObject], str], ...] = (
    delete_char, insert_char, replace_char, truncate, delete_line, duplicate_line, swap_lines,
    insert_line, change_indentation,
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=SUPPRESSED,
    phases=PHASES,
)
@given(data=st.data())
def test_text_mutations_raise_only_project_error(base_project: Path, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS), label="seed")
    text = seed.text
    for _ in range(data.draw(st.integers(1, 3), label="mutation count")):
        mutation = data.draw(st.sampled_from(TEXT_MUTATIONS), label="mutation")
        text = mutation(text, data)
    note(f"{seed.target}:\n{text}")
    _check_load(base_project, seed, text)


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00garbage", b"flows:\n  a: \xc3\x28\n", b"\xef\xbb\xbfflows: {}\n", b"[", b"flows: *x\n"],
    ids=["empty", "utf16-ish", "invalid-utf8", "bom", "unclosed", "undefined-alias"],
)
def test_raw_bytes_raise_only_project_error(base_project: Path, content: bytes) -> None:
    _check_load(base_project, SEEDS[0], content)


# --- crashes found by fuzzing, kept as fixed examples ----------------------------------------

_BRANCHING_STEP = """\
flows:
  fuzz_flow:
    description: d
    steps:
      - action: utter_greet
        next:
{branches}
"""


@pytest.mark.parametrize(
    "flows",
    [
        # an empty inline step list as a branch target (IndexError in flows.py)
        _BRANCHING_STEP.format(branches="          - if: slots.authenticated\n            then: []\n          - else: END"),
        _BRANCHING_STEP.format(branches="          - else: []"),
        # a long chain of `not` / `and` in a condition (RecursionError in the condition compiler)
        _BRANCHING_STEP.format(branches=f"          - if: {'not ' * 500}slots.authenticated\n            then: END\n          - else: END"),
        _BRANCHING_STEP.format(branches=f"          - if: {' and '.join(['slots.authenticated'] * 500)}\n            then: END\n          - else: END"),
        # keys of several types below `metadata` (TypeError in the flow fingerprint's sorted json.dumps)
        "flows:\n  fuzz_flow:\n    description: d\n    metadata:\n      a: {1: x, b: y}\n    steps:\n      - action: utter_greet\n",
    ],
    ids=["empty-then", "empty-else", "500-nots", "500-ands", "mixed-key-types-in-metadata"],
)
def test_found_crashes_raise_only_project_error(base_project: Path, flows: str) -> None:
    _check_load(base_project, Seed(f"{FLOW_FOLDER}/fuzz.yml", flows, "fixed example"), flows)
