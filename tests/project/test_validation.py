"""One broken project per validation rule: each problem is reported at the right file and line."""

from __future__ import annotations

import pytest

from tests.project.conftest import BASE_DOMAIN, ProjectFactory
from voicecalm.project import ProjectError, load_project

BROKEN_FLOWS = {
    "flow id format": """
        flows:
          "bad id!":  # <- must match
            description: d
            steps:
              - action: utter_done
        """,
    "duplicate step id": """
        flows:
          transfer:
            description: d
            steps:
              - id: ask
                collect: amount
              - id: ask  # <- used twice
                collect: recipient
        """,
    "dangling next": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                next: nowhere  # <- points to 'nowhere'
        """,
    "inline list without next": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                next:
                  - if: slots.amount > 100
                    then:
                      - action: utter_too_much  # <- needs an explicit `next`
                  - else: END
        """,
    "if without else": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount  # <- no `else`
                next:
                  - if: slots.amount > 100
                    then: END
        """,
    "two else branches": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                next:
                  - if: slots.amount > 100
                    then: END
                  - else: END
                  - else: END  # <- more than one `else`
        """,
    "unreachable step": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                next: END
              - action: utter_done  # <- never be reached
        """,
    "link with next": """
        flows:
          transfer:
            description: d
            steps:
              - link: other  # <- cannot have `next`
                next: END
          other:
            description: d
            steps:
              - action: utter_done
        """,
    "unknown slot in collect": """
        flows:
          transfer:
            description: d
            steps:
              - collect: iban  # <- 'iban', which is not in the domain
        """,
    "unknown slot in set_slots": """
        flows:
          transfer:
            description: d
            steps:
              - set_slots:  # <- 'iban', which is not in the domain
                  - iban: DE00
        """,
    "unknown slot in condition": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                next:
                  - if: slots.iban is null  # <- slot 'iban'
                    then: END
                  - else: END
        """,
    "unknown slot in flow guard": """
        flows:
          transfer:  # <- slot 'logged_in'
            description: d
            if: slots.logged_in
            steps:
              - action: utter_done
        """,
    "categorical compared with an unknown value": """
        flows:
          transfer:
            description: d
            steps:
              - collect: account
                next:
                  - if: slots.account = "Savings"  # <- not one of
                    then: END
                  - else: END
        """,
    "bool compared with a string": """
        flows:
          transfer:
            description: d
            steps:
              - collect: confirmed
                next:
                  - if: slots.confirmed = "yes"  # <- use true or false
                    then: END
                  - else: END
        """,
    "categorical set_slots value": """
        flows:
          transfer:
            description: d
            steps:
              - set_slots:  # <- not one of
                  - account: business
        """,
    "collect with no way to ask": """
        flows:
          transfer:
            description: d
            steps:
              - collect: pin  # <- no way to ask
        """,
    "collect with an undefined utter": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount  # <- 'utter_ask_how_much', which is not defined
                utter: utter_ask_how_much
        """,
    "flow without description": """
        flows:
          transfer:  # <- no description
            steps:
              - action: utter_done
        """,
    "called flow contains a link": """
        flows:
          transfer:
            description: d
            steps:
              - call: login  # <- contains a `link`
          login:
            description: d
            if: False
            steps:
              - link: transfer
        """,
    "call to an unknown flow": """
        flows:
          transfer:
            description: d
            steps:
              - call: login  # <- unknown flow 'login'
        """,
    "link to an unknown flow": """
        flows:
          transfer:
            description: d
            steps:
              - link: login  # <- unknown flow 'login'
        """,
    "user flow links to a pattern it may not": """
        flows:
          transfer:
            description: d
            steps:
              - link: pattern_chitchat  # <- is not allowed
        """,
    "pattern calls a flow": """
        flows:
          pattern_chitchat:
            description: d
            steps:
              - call: transfer  # <- cannot `call`
          transfer:
            description: d
            steps:
              - action: utter_done
        """,
    "a pattern is called": """
        flows:
          transfer:
            description: d
            steps:
              - call: pattern_search  # <- cannot be called
        """,
    "internal error pattern links": """
        flows:
          pattern_internal_error:
            description: d
            steps:
              - link: transfer  # <- cannot link
          transfer:
            description: d
            steps:
              - action: utter_done
        """,
    "noop without next": """
        flows:
          transfer:
            description: d
            steps:
              - noop: true  # <- needs `next`
        """,
    "unknown response": """
        flows:
          transfer:
            description: d
            steps:
              - action: utter_missing  # <- 'utter_missing' is not defined
        """,
    "custom action not in the domain": """
        flows:
          transfer:
            description: d
            steps:
              - action: action_send_money  # <- 'action_send_money'
        """,
    "rejection uses another slot": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                rejections:
                  - if: slots.recipient is null  # <- may only use slots.amount
                    utter: utter_too_much
        """,
    "rejection with an undefined response": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                rejections:
                  - if: slots.amount > 5000  # <- 'utter_nope' is not defined
                    utter: utter_nope
        """,
    "condition syntax error": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                next:
                  - if: slots.amount > > 3  # <- does not parse
                    then: END
                  - else: END
        """,
    "unquoted word in condition": """
        flows:
          transfer:
            description: d
            steps:
              - collect: account
                next:
                  - if: slots.account = savings  # <- uses 'savings'
                    then: END
                  - else: END
        """,
    "persisted_slots and reset_after_flow_ends": """
        flows:
          transfer:  # <- both `persisted_slots` and `reset_after_flow_ends`
            description: d
            persisted_slots: [amount]
            steps:
              - collect: amount
              - collect: recipient
                reset_after_flow_ends: false
        """,
    "persisted slot not written by the flow": """
        flows:
          transfer:  # <- neither collected nor set
            description: d
            persisted_slots: [recipient]
            steps:
              - collect: amount
        """,
    "unknown flow key": """
        flows:
          transfer:
            description: d
            priority: 3  # <- unknown key 'priority'
            steps:
              - action: utter_done
        """,
    "unknown step key": """
        flows:
          transfer:
            description: d
            steps:
              - collect: amount
                ask_twice: true  # <- unknown key 'ask_twice'
        """,
    "description on an action step": """
        flows:
          transfer:
            description: d
            steps:
              - action: utter_done
                description: say done  # <- unknown key 'description'
        """,
    "step with two types": """
        flows:
          transfer:
            description: d
            steps:
              - action: utter_done  # <- exactly one of
                collect: amount
        """,
    "empty steps": """
        flows:
          transfer:
            description: d
            steps: []  # <- at least 1
        """,
    "dtmf with both keys": """
        flows:
          transfer:
            description: d
            steps:
              - collect: pin
                utter: utter_ask_amount
                dtmf:  # <- not both
                  length: 4
                  finish_on_key: "#"
        """,
    "call to an MCP tool": """
        flows:
          transfer:
            description: d
            steps:
              - call: weather  # <- not supported
                mcp_server: tools
        """,
    "reserved step id": """
        flows:
          transfer:
            description: d
            steps:
              - id: END  # <- reserved
                action: utter_done
                next: END
        """,
    "yaml syntax error": """
        flows:
          transfer:
            description: d
            steps:
              - action: [utter_done
              - collect: amount  # <- YAML syntax error
        """,
    "duplicate yaml key": """
        flows:
          transfer:
            description: d
            description: e  # <- duplicate key
            steps:
              - action: utter_done
        """,
}


@pytest.mark.parametrize("flows", BROKEN_FLOWS.values(), ids=BROKEN_FLOWS.keys())
def test_broken_flow_is_reported_at_its_line(factory: ProjectFactory, flows: str) -> None:
    factory.project(flows)
    factory.assert_expected_errors()


BROKEN_DOMAINS = {
    "categorical slot without values": BASE_DOMAIN
    + """
  tier:  # <- needs a non-empty `values`
    type: categorical
""",
    "unknown slot type": BASE_DOMAIN
    + """
  tier:
    type: money  # <- 'type'
""",
    "unknown slot key": BASE_DOMAIN
    + """
  tier:
    type: text
    auto_fill: true  # <- unknown key 'auto_fill'
""",
    "response that is not a list": BASE_DOMAIN.replace(
        "  utter_done:\n    - text: Done.", "  utter_done: Done.  # <- non-empty list"
    ),
    "response condition with an unknown slot": BASE_DOMAIN.replace(
        "  utter_done:\n    - text: Done.",
        "  utter_done:  # <- slot 'vip'\n    - text: Done.\n      condition: slots.vip",
    ),
    "initial value of the wrong type": BASE_DOMAIN
    + """
  tier:  # <- not one of
    type: categorical
    values: [gold, silver]
    initial_value: bronze
""",
}


@pytest.mark.parametrize("domain", BROKEN_DOMAINS.values(), ids=BROKEN_DOMAINS.keys())
def test_broken_domain_is_reported_at_its_line(factory: ProjectFactory, domain: str) -> None:
    factory.write("config.yml", "recipe: default.v1\n")
    factory.write("domain.yml", domain)
    factory.write("data/flows.yml", "flows:\n  done:\n    description: d\n    steps:\n      - action: utter_done\n")
    factory.assert_expected_errors()


def test_every_problem_is_reported_in_one_run(factory: ProjectFactory) -> None:
    factory.project("""
        flows:
          one:
            description: d
            steps:
              - collect: iban  # <- not in the domain
          two:  # <- no description
            steps:
              - action: utter_missing  # <- not defined
          three:
            description: d
            bogus: 1  # <- unknown key
            steps:
              - action: utter_done
        """)
    factory.write("data/more.yml", """
        flows:
          four:
            description: d
            steps:
              - link: nowhere  # <- unknown flow
        """)
    error = factory.assert_expected_errors()
    assert len(error.errors) == 5


def test_flow_defined_twice_names_both_files(factory: ProjectFactory) -> None:
    factory.project("flows:\n  done:\n    description: d\n    steps:\n      - action: utter_done\n")
    factory.write("data/zz_again.yml", """
        flows:
          done:  # <- already defined in data/flows.yml:2
            description: d
            steps:
              - action: utter_done
        """)
    factory.assert_expected_errors()


def test_unset_environment_variable(factory: ProjectFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VC_TEST_UNSET", raising=False)
    factory.project("flows:\n  done:\n    description: d\n    steps:\n      - action: utter_done\n")
    factory.write("endpoints.yml", """
        action_endpoint:
          url: "http://localhost:5055/webhook"
          token: "${VC_TEST_UNSET}"  # <- 'VC_TEST_UNSET' is not set
        """)
    factory.assert_expected_errors()


def test_grpc_action_server_is_refused(factory: ProjectFactory) -> None:
    factory.project("flows:\n  done:\n    description: d\n    steps:\n      - action: utter_done\n")
    factory.write("endpoints.yml", """
        action_endpoint:  # <- gRPC action servers are not supported
          url: "grpc://localhost:5055"
        """)
    factory.assert_expected_errors()


def test_missing_domain(factory: ProjectFactory) -> None:
    factory.write("config.yml", "recipe: default.v1\n")
    assert any("no domain found" in p.message for p in factory.errors().errors)


def test_folder_without_config(tmp_path) -> None:
    with pytest.raises(ProjectError, match="config.yml is missing"):
        load_project(tmp_path)
