"""What a valid project loads into: merged domain, flow graph, defaults, config and endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.project.conftest import BASE_DOMAIN, ProjectFactory
from voicecalm.project import ProjectError, load_project
from voicecalm.project.flows import END, ActionStep, CollectStep, LinkStep, NoopStep, SetSlotsStep

REPOSITORY = Path(__file__).parents[2]

TRANSFER = """
flows:
  transfer_money:
    description: Send money to someone.
    persisted_slots: [recipient]
    steps:
      - collect: recipient
        description: who receives the money
      - collect: amount
        rejections:
          - if: slots.amount > 5000
            utter: utter_too_much
        next:
          - if: slots.amount > 1000
            then:
              - set_slots:
                  - confirmed: null
              - collect: confirmed
                ask_before_filling: true
                next:
                  - if: slots.confirmed
                    then: send
                  - else: END
          - else: send
      - id: send
        action: action_check_limit
      - noop: true
        next: END
"""


def test_example_assistant_is_valid() -> None:
    project = load_project(REPOSITORY)
    assert len(project.user_flows) >= 8
    assert project.config.command_generator is not None
    assert project.endpoints.action_endpoint is not None


def test_flow_graph_has_default_ids_and_resolved_next(factory: ProjectFactory) -> None:
    project = factory.project(TRANSFER) and factory.load()
    flow = project.flows["transfer_money"]
    ids = [step.id for step in flow.steps]
    assert ids == [
        "transfer_money_0_collect_recipient",
        "transfer_money_1_collect_amount",
        "transfer_money_2_set_slots",
        "transfer_money_3_collect_confirmed",
        "send",
        "transfer_money_5_noop",
    ]
    recipient, amount, reset, confirm, send, noop = flow.steps
    assert isinstance(recipient, CollectStep) and recipient.utter == "utter_ask_recipient"
    assert recipient.targets == ("transfer_money_1_collect_amount",)
    assert [(b.condition, b.target) for b in amount.next] == [
        ("slots.amount > 1000", "transfer_money_2_set_slots"),
        (None, "send"),
    ]
    assert amount.rejections[0].utter == "utter_too_much"
    assert isinstance(reset, SetSlotsStep) and reset.slots == (("confirmed", None),)
    assert reset.targets == ("transfer_money_3_collect_confirmed",)
    assert isinstance(confirm, CollectStep) and confirm.ask_before_filling
    assert confirm.targets == ("send", END)
    assert isinstance(send, ActionStep) and send.targets == ("transfer_money_5_noop",)
    assert isinstance(noop, NoopStep) and noop.targets == (END,)
    assert flow.name == "transfer money"
    assert flow.persisted_slots == ("recipient",)
    assert flow.collected_slots == {"recipient", "amount", "confirmed"}
    assert amount.location.line == 8 and str(amount.location.file) == "data/flows.yml"


def test_default_patterns_are_added_and_project_overrides_win(factory: ProjectFactory) -> None:
    factory.project(TRANSFER + """
  pattern_chitchat:
    description: Answer small talk with a fixed line.
    steps:
      - action: utter_done
""")
    project = factory.load()
    assert "pattern_collect_information" in project.flows
    assert project.flows["pattern_chitchat"].steps[0].action == "utter_done"
    assert str(project.flows["pattern_chitchat"].location.file) == "data/flows.yml"
    assert str(project.flows["pattern_search"].location.file).startswith("<voicecalm>")
    assert "utter_flow_cancelled_rasa" in project.domain.responses
    assert project.domain.slots["csat_score"].values == ("satisfied", "unsatisfied")


def test_project_response_replaces_default_response(factory: ProjectFactory) -> None:
    domain = BASE_DOMAIN.replace("responses:\n", "responses:\n  utter_cannot_handle:\n    - text: Not my thing.\n")
    factory.project(TRANSFER, domain=domain)
    response = factory.load().domain.responses["utter_cannot_handle"]
    assert [v.text for v in response.variations] == ["Not my thing."]


def test_project_without_flows_gets_no_patterns(factory: ProjectFactory) -> None:
    factory.project()
    factory.write("data/nlu.yml", "nlu: []\n")
    project = factory.load()
    assert project.flows == {}
    assert "utter_flow_cancelled_rasa" not in project.domain.responses


def test_domain_folder_is_merged_and_later_file_wins(factory: ProjectFactory) -> None:
    factory.write("config.yml", "recipe: default.v1\n")
    factory.write("domain/a.yml", BASE_DOMAIN)
    factory.write("domain/sub/b.yml", """
        intents: [greet]
        actions: [action_extra]
        responses:
          utter_done:
            - text: All done.
        """)
    factory.write("data/flows.yml", TRANSFER)
    project = factory.load()
    assert [v.text for v in project.domain.responses["utter_done"].variations] == ["All done."]
    assert {"action_check_limit", "action_extra"} <= project.domain.actions
    assert "greet" in project.domain.intents
    assert any("also defined in domain/a.yml" in w.message for w in project.warnings)


def test_nlu_files_are_skipped_and_flows_found_recursively(factory: ProjectFactory) -> None:
    factory.project()
    factory.write("data/nlu.yml", "nlu:\n  - intent: greet\n    examples: |\n      - hi\n")
    factory.write("data/deep/er/flows.yaml", TRANSFER)
    assert "transfer_money" in factory.load().flows


def test_config_names_flow_folders_and_cli_overrides_it(factory: ProjectFactory) -> None:
    factory.project(config="recipe: default.v1\ndata: [business]\n")
    factory.write("business/flows.yml", TRANSFER)
    factory.write("other/flows.yml", TRANSFER.replace("transfer_money", "pay_bill"))
    assert "transfer_money" in factory.load().flows
    assert "pay_bill" in load_project(factory.root, [Path("other")]).flows


def test_yaml_12_scalars_and_environment_variables(factory: ProjectFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VC_ACTION_TOKEN", "s3cret")
    factory.project(TRANSFER, domain=BASE_DOMAIN + "  answer:\n    type: categorical\n    values: [yes, no, on]\n")
    factory.write("endpoints.yml", 'action_endpoint:\n  url: "http://localhost:5055/webhook"\n  token: "${VC_ACTION_TOKEN}"\n')
    project = factory.load()
    assert project.domain.slots["answer"].values == ("yes", "no", "on")
    assert project.endpoints.action_endpoint.token == "s3cret"
    assert project.endpoints.action_endpoint.timeout == 5


def test_config_components(factory: ProjectFactory) -> None:
    factory.project(TRANSFER, config="""
recipe: default.v1
language: de
pipeline:
  - name: NLUCommandAdapter
  - name: CompactLLMCommandGenerator
    llm:
      model: openai/gpt-4o-mini
      timeout: 3
    flow_retrieval:
      active: false
  - name: WhitespaceTokenizer
policies:
  - name: FlowPolicy
  - name: IntentlessPolicy
""")
    project = factory.load()
    generator = project.config.command_generator
    assert generator.llm.model == "openai/gpt-4o-mini" and generator.llm.timeout == 3
    assert generator.flow_retrieval.active is False and generator.fast_path is True
    assert project.config.handles_intent_payloads and project.config.language == "de"
    warnings = [w.message for w in project.warnings]
    assert any("WhitespaceTokenizer" in m for m in warnings)
    assert any("IntentlessPolicy" in m for m in warnings)


def test_unknown_generator_key_is_an_error(factory: ProjectFactory) -> None:
    factory.project(TRANSFER, config="pipeline:\n  - name: CompactLLMCommandGenerator\n    temprature: 0\n")
    error = factory.errors()
    assert [str(p) for p in error.errors] == ["config.yml:3:5: unknown key 'temprature'"]


def test_hyphenated_flow_id_is_a_warning(factory: ProjectFactory) -> None:
    factory.project(TRANSFER.replace("transfer_money", "transfer-money"))
    assert any("should match" in w.message for w in factory.load().warnings)


def test_link_and_call_steps(factory: ProjectFactory) -> None:
    factory.project("""
flows:
  main:
    description: d
    steps:
      - call: helper
      - link: pattern_human_handoff
  helper:
    description: d
    if: False
    steps:
      - action: utter_done
""")
    project = factory.load()
    call, link = project.flows["main"].steps
    assert call.call == "helper" and call.targets == ("main_1_link_pattern_human_handoff",)
    assert isinstance(link, LinkStep) and link.targets == ()
    assert project.flows["helper"].guard is False


def test_error_type_is_the_only_failure(factory: ProjectFactory) -> None:
    factory.project("flows: [1, 2]\n")
    with pytest.raises(ProjectError, match="must map flow ids"):
        factory.load()
