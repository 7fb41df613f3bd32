"""Response rendering: variation choice, interpolation, Jinja sandbox, fallbacks (formats.md §4.2)."""

from __future__ import annotations

import logging
import random
import textwrap
from collections.abc import Iterable
from typing import Any

import pytest

from voicecalm.nlg import BotMessage, ResponseRenderer
from voicecalm.project import Domain, Response, Slot, load_project
from voicecalm.project import schema


def make_domain(responses: dict[str, list[dict[str, Any]]], slots: Iterable[str] = ("name", "flag")) -> Domain:
    return Domain(
        slots={name: Slot(name, schema.SlotModel(type="any"), None) for name in slots},
        responses={
            name: Response(name, tuple(schema.ResponseVariation.model_validate(v) for v in variations), None)
            for name, variations in responses.items()
        },
        actions=frozenset(),
        actions_sending_domain=frozenset(),
        intents=frozenset(),
        entities=frozenset(),
    )


def renderer(responses: dict[str, list[dict[str, Any]]], seed: int = 0) -> ResponseRenderer:
    return ResponseRenderer(make_domain(responses), random.Random(seed))


def text_of(message: BotMessage | None) -> str | None:
    assert message is not None
    return message.text


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> ResponseRenderer:
    """A tiny real project, so the default pattern responses are loaded as shipped."""
    root = tmp_path_factory.mktemp("project")
    files = {
        "config.yml": """
            recipe: default.v1
            language: en
            assistant_id: nlg_test
            pipeline: []
            policies:
              - name: FlowPolicy
        """,
        "domain.yml": """
            version: "3.1"
            slots:
              name:
                type: text
            responses:
              utter_hi:
                - text: Hi {name}
        """,
        "data/flows.yml": """
            flows:
              greet:
                description: Greet the user.
                steps:
                  - action: utter_hi
        """,
    }
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return ResponseRenderer(load_project(root).domain, random.Random(0))


# --- variation choice ------------------------------------------------------------------------

ALL_GROUPS = [
    {"text": "1", "condition": "slots.flag", "channel": "browser_audio"},
    {"text": "2", "channel": "browser_audio"},
    {"text": "3", "condition": "slots.flag"},
    {"text": "4"},
]


@pytest.mark.parametrize(
    ("channel", "flag", "expected"),
    [
        ("browser_audio", True, "1"),  # condition true + matching channel beats everything
        ("browser_audio", False, "2"),  # condition false: the unconditional channel variant
        ("rest", True, "3"),  # other channel: channel variants never apply
        (None, True, "3"),
        ("rest", False, "4"),
        (None, None, "4"),
    ],
)
def test_selection_groups_in_order(channel: str | None, flag: bool | None, expected: str) -> None:
    message = renderer({"utter_x": ALL_GROUPS}).render("utter_x", slots={"flag": flag}, channel=channel)
    assert text_of(message) == expected


def test_matching_channel_without_condition_beats_true_condition_without_channel() -> None:
    render = renderer({"utter_x": ALL_GROUPS[1:]}).render
    assert text_of(render("utter_x", slots={"flag": True}, channel="browser_audio")) == "2"


def test_random_pick_stays_inside_the_winning_group() -> None:
    render = renderer(
        {
            "utter_x": [
                {"text": "a", "condition": "slots.flag"},
                {"text": "b", "condition": "slots.flag"},
                {"text": "c", "condition": "not slots.flag"},
                {"text": "d"},
                {"text": "e"},
            ]
        },
        seed=7,
    ).render
    seen = {text_of(render("utter_x", slots={"flag": True})) for _ in range(100)}
    assert seen == {"a", "b"}
    seen = {text_of(render("utter_x", slots={"flag": False})) for _ in range(100)}
    assert seen == {"c"}


def test_seeded_rng_makes_picks_reproducible() -> None:
    variations = {"utter_x": [{"text": str(i)} for i in range(5)]}
    first, again = renderer(variations, seed=3), renderer(variations, seed=3)
    picks = [text_of(first.render("utter_x", slots={})) for _ in range(30)]
    assert picks == [text_of(again.render("utter_x", slots={})) for _ in range(30)]
    assert len(set(picks)) > 1


def test_condition_is_jinja_rendered_with_slots_first() -> None:
    render = renderer(
        {"utter_x": [{"text": "same", "condition": "slots.name == '{{ slots.flag }}'"}, {"text": "other"}]}
    ).render
    assert text_of(render("utter_x", slots={"name": "yes", "flag": "yes"})) == "same"
    assert text_of(render("utter_x", slots={"name": "yes", "flag": "no"})) == "other"


def test_legacy_condition_list_requires_every_slot_to_match() -> None:
    legacy = [{"type": "slot", "name": "name", "value": "Ann"}, {"type": "slot", "name": "flag", "value": True}]
    render = renderer({"utter_x": [{"text": "both", "condition": legacy}, {"text": "default"}]}).render
    assert text_of(render("utter_x", slots={"name": "Ann", "flag": True})) == "both"
    assert text_of(render("utter_x", slots={"name": "Ann", "flag": False})) == "default"
    assert text_of(render("utter_x", slots={"flag": True})) == "default"


def test_unparsable_condition_counts_as_false() -> None:
    render = renderer({"utter_x": [{"text": "bad", "condition": "slots.flag =="}, {"text": "ok"}]}).render
    assert text_of(render("utter_x", slots={"flag": True})) == "ok"


def test_channel_variant_of_default_csat_question(defaults: ResponseRenderer) -> None:
    voice = defaults.render("utter_ask_csat_score", slots={}, channel="browser_audio")
    assert voice is not None and voice.buttons == () and "satisfied" in (voice.text or "")
    text = defaults.render("utter_ask_csat_score", slots={}, channel="rest")
    assert text is not None
    assert [b["payload"] for b in text.buttons] == [
        "/SetSlots(csat_score=satisfied)",
        "/SetSlots(csat_score=unsatisfied)",
    ]


# --- default interpolation -------------------------------------------------------------------


def test_slot_placeholders_are_filled_and_empty_slots_render_none() -> None:
    render = renderer({"utter_x": [{"text": "Hi {name}, flag={flag}"}]}).render
    assert text_of(render("utter_x", slots={"name": "Ann", "flag": 2.5})) == "Hi Ann, flag=2.5"
    assert text_of(render("utter_x", slots={"name": None, "flag": False})) == "Hi None, flag=False"
    # A declared slot the caller left out is still a known name.
    assert text_of(render("utter_x", slots={})) == "Hi None, flag=None"


def test_unknown_placeholder_leaves_the_whole_text_unformatted(caplog: pytest.LogCaptureFixture) -> None:
    render = renderer({"utter_x": [{"text": "Hi {name}, {nonexistent}"}]}).render
    with caplog.at_level(logging.WARNING, logger="voicecalm.nlg"):
        assert text_of(render("utter_x", slots={"name": "Ann"})) == "Hi {name}, {nonexistent}"
    assert "nonexistent" in caplog.text


def test_double_braces_are_escapes_in_format_mode() -> None:
    render = renderer({"utter_x": [{"text": "{{name}} is {name}"}]}).render
    assert text_of(render("utter_x", slots={"name": "Ann"})) == "{name} is Ann"


def test_buttons_are_interpolated_and_json_payload_braces_survive() -> None:
    render = renderer(
        {
            "utter_x": [
                {
                    "text": "Pick",
                    "buttons": [
                        {"title": "Yes, {name}", "payload": "/SetSlots(name={name})"},
                        {"title": "Intent", "payload": '/inform{"name": "Bob"}'},
                        {"title": "Nested", "payload": '/inform{"who": {"name": "Bob"}}'},
                    ],
                }
            ]
        }
    ).render
    message = render("utter_x", slots={"name": "Ann"})
    assert message is not None
    assert message.buttons == (
        {"title": "Yes, Ann", "payload": "/SetSlots(name=Ann)"},
        {"title": "Intent", "payload": '/inform{"name": "Bob"}'},
        {"title": "Nested", "payload": '/inform{"who": {"name": "Bob"}}'},
    )


def test_image_custom_attachment_and_quick_replies_are_interpolated_recursively() -> None:
    domain_responses = {
        "utter_x": [
            {
                "image": "https://img/{name}.png",
                "custom": {"greeting": "Hi {name}", "items": [{"label": "{flag}"}, 3], "n": 1},
                "attachment": {"url": "https://files/{name}"},
                "quick_replies": [{"title": "{name}"}],
                "elements": [{"title": "{name}"}],
            }
        ]
    }
    render = renderer(domain_responses).render
    message = render("utter_x", slots={"name": "Ann", "flag": True})
    assert message is not None
    assert message.text is None
    assert message.image == "https://img/Ann.png"
    assert message.custom == {"greeting": "Hi Ann", "items": [{"label": "True"}, 3], "n": 1}
    assert message.attachment == {"url": "https://files/Ann"}
    assert message.quick_replies == [{"title": "Ann"}]
    assert message.elements == [{"title": "{name}"}]  # Rasa does not interpolate elements
    # Rendering hands out copies: changing a message never changes the domain.
    message.custom["greeting"] = "changed"  # type: ignore[index]
    message.elements[0]["title"] = "changed"
    again = render("utter_x", slots={"name": "Ann"})
    assert again is not None and again.custom is not None
    assert again.custom["greeting"] == "Hi Ann" and again.elements == [{"title": "{name}"}]


def test_extra_values_fill_placeholders_and_win_over_slots() -> None:
    render = renderer({"utter_x": [{"text": "{name} owes {amount}"}]}).render
    assert text_of(render("utter_x", slots={"name": "Ann"}, extra={"amount": 5, "name": "Bob"})) == "Bob owes 5"


# --- Jinja templates -------------------------------------------------------------------------


def test_jinja_template_with_slots_filters_and_loops() -> None:
    template = "{{ name | upper }}: {% for i in items %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}"
    render = renderer({"utter_x": [{"text": template, "metadata": {"template": "jinja"}}]}).render
    assert text_of(render("utter_x", slots={"name": "ann"}, extra={"items": [1, 2, 3]})) == "ANN: 1, 2, 3"


def test_default_jinja_responses_use_context(defaults: ResponseRenderer) -> None:
    corrected = {"corrected_slots": {"amount": {"value": 50}, "recipient": {"value": "Ann"}}}
    message = defaults.render("utter_corrected_previous_input", slots={}, context=corrected)
    assert message is not None and message.text is not None
    assert "amount to 50, and recipient to Ann" in message.text
    assert message.metadata["rephrase"] is True
    cancelled = defaults.render("utter_flow_cancelled_rasa", slots={}, context={"canceled_name": "transfer money"})
    assert "transfer money" in text_of(cancelled) and "{{" not in text_of(cancelled)  # type: ignore[operator]


def test_jinja_extra_wins_over_slots_and_sees_context() -> None:
    render = renderer(
        {"utter_x": [{"text": "{{ name }} {{ context.flow_id }}", "metadata": {"template": "jinja"}}]}
    ).render
    message = render("utter_x", slots={"name": "Ann"}, context={"flow_id": "pay"}, extra={"name": "Bob"})
    assert text_of(message) == "Bob pay"


def test_jinja_rendering_error_sends_the_text_as_written(
    defaults: ResponseRenderer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="voicecalm.nlg"):
        message = defaults.render("utter_corrected_previous_input", slots={}, context={})
    assert text_of(message).startswith("Got it, I've changed {% for")  # type: ignore[union-attr]
    assert "UndefinedError" in caplog.text


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_attribute_abuse(template: str, caplog: pytest.LogCaptureFixture) -> None:
    render = renderer({"utter_x": [{"text": template, "metadata": {"template": "jinja"}}]}).render
    with caplog.at_level(logging.WARNING, logger="voicecalm.nlg"):
        text = text_of(render("utter_x", slots={"name": "Ann"}))
    assert text == template  # logged and sent as written, never evaluated
    assert "SecurityError" in caplog.text and "<class" not in caplog.text


def test_sandbox_renders_plain_private_attribute_as_empty() -> None:
    render = renderer({"utter_x": [{"text": "[{{ ''.__class__ }}]", "metadata": {"template": "jinja"}}]}).render
    assert text_of(render("utter_x", slots={})) == "[]"


# --- translation, flags, metadata ----------------------------------------------------------


def test_translation_is_used_for_a_matching_language() -> None:
    render = renderer(
        {"utter_x": [{"text": "Hello {name}", "translation": {"de": "Hallo {name}", "fr": "Bonjour {name}"}}]}
    ).render
    assert text_of(render("utter_x", slots={"name": "Ann"}, language="de")) == "Hallo Ann"
    assert text_of(render("utter_x", slots={"name": "Ann"}, language="es")) == "Hello Ann"
    assert text_of(render("utter_x", slots={"name": "Ann"})) == "Hello Ann"


def test_message_carries_name_interruptions_and_metadata() -> None:
    render = renderer(
        {
            "utter_x": [
                {"text": "Hold on", "allow_interruptions": False, "id": "v1", "metadata": {"rephrase": True}}
            ],
            "utter_y": [{"text": "Plain"}],
        }
    ).render
    message = render("utter_x", slots={})
    assert message is not None
    assert message.response == "utter_x"
    assert message.allow_interruptions is False
    assert message.metadata == {"rephrase": True, "id": "v1"}
    plain = render("utter_y", slots={})
    assert plain is not None and plain.allow_interruptions is True and plain.metadata == {}


def test_data_has_the_bot_event_shape() -> None:
    message = BotMessage(text="t", buttons=({"title": "a", "payload": "/a"},), image="i")
    assert message.data() == {
        "elements": None,
        "quick_replies": None,
        "buttons": [{"title": "a", "payload": "/a"}],
        "attachment": None,
        "image": "i",
        "custom": None,
    }
    assert BotMessage(text="t").data()["buttons"] is None


# --- missing responses and fallbacks -------------------------------------------------------


def test_unknown_response_renders_none() -> None:
    rendering = renderer({"utter_x": [{"text": "x"}]})
    assert rendering.render("utter_missing", slots={}) is None
    assert rendering.has("utter_x") and not rendering.has("utter_missing")


def test_no_fitting_variation_sends_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    render = renderer(
        {
            "utter_x": [{"text": "voice only", "channel": "browser_audio"}, {"text": "never", "condition": "false"}],
            "utter_internal_error_rasa": [{"text": "Oops {name}"}],
        }
    ).render
    with caplog.at_level(logging.WARNING, logger="voicecalm.nlg"):
        message = render("utter_x", slots={"name": "Ann"}, channel="rest")
    assert message is not None
    assert (message.response, message.text) == ("utter_internal_error_rasa", "Oops Ann")
    assert "utter_x" in caplog.text


def test_internal_error_missing_too_sends_generic_text(caplog: pytest.LogCaptureFixture) -> None:
    render = renderer({"utter_x": [{"text": "voice only", "channel": "browser_audio"}]}).render
    with caplog.at_level(logging.WARNING, logger="voicecalm.nlg"):
        message = render("utter_x", slots={}, channel="rest")
    assert message is not None and message.text and message.response == "utter_internal_error_rasa"
    assert "generic" in caplog.text


def test_default_internal_error_response_is_used(defaults: ResponseRenderer) -> None:
    message = defaults.render("utter_internal_error_rasa", slots={})
    assert message is not None and message.response == "utter_internal_error_rasa" and message.text
