"""Flow retrieval: with more flows than `num_flows`, the prompt shows an embedding shortlist plus
the flows that must always be there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.project.conftest import ProjectFactory
from voicecalm.models.embedder import LocalEmbedder
from voicecalm.project import Project
from voicecalm.project.schema import FlowRetrievalConfig
from voicecalm.tracker.conversation import Conversation
from voicecalm.understanding.flow_retrieval import FlowRetrieval

TOPICS = {
    "block_card": "Block a lost or stolen bank card so nobody can use it.",
    "check_balance": "Tell the customer how much money is in their account.",
    "transfer_money": "Send money to another person or pay someone.",
    "book_flight": "Book a plane ticket to another city.",
    "order_pizza": "Order a pizza for delivery.",
    "reset_password": "Reset the password of the online account.",
    "find_branch": "Find the nearest branch office and its opening hours.",
    "report_fraud": "Report a suspicious transaction or a scam.",
    "change_address": "Update the postal address on file.",
    "open_account": "Open a new savings or checking account.",
    "close_account": "Close an existing account.",
    "apply_loan": "Apply for a personal loan or mortgage.",
    "weather": "Tell the weather forecast.",
    "set_alarm": "Set an alarm clock.",
    "play_music": "Play a song or a playlist.",
    "track_parcel": "Track a parcel that was shipped.",
    "exchange_rate": "Tell the exchange rate between two currencies.",
    "cancel_subscription": "Cancel a paid subscription.",
    "update_phone": "Change the phone number on file.",
    "order_checkbook": "Order a new checkbook.",
    "dispute_charge": "Dispute a charge on the card statement.",
    "travel_notice": "Tell the bank about travel abroad so the card keeps working.",
}


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder.shared()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    factory = ProjectFactory(tmp_path)
    flows = "flows:\n" + "".join(
        f"  {flow_id}:\n    description: {text}\n" + ("    always_include_in_prompt: true\n" if flow_id == "weather" else "")
        + ("    if: slots.vip\n" if flow_id == "apply_loan" else "")
        + "    steps:\n      - action: utter_done\n"
        for flow_id, text in TOPICS.items()
    )
    factory.project(flows, domain="responses:\n  utter_done:\n    - text: Done.\nslots:\n  vip:\n    type: bool\n    initial_value: false\n")
    return factory.load()


async def test_shortlist_finds_the_relevant_flows(project: Project, embedder: LocalEmbedder) -> None:
    retrieval = FlowRetrieval(project, FlowRetrievalConfig(num_flows=3), embedder)
    assert retrieval.needed
    flows = [f.id for f in await retrieval.shortlist(Conversation("x", {"vip": False}), "somebody stole my debit card")]
    assert "block_card" in flows
    assert "weather" in flows, "always_include_in_prompt"
    assert "play_music" not in flows and len(flows) <= 4


async def test_guarded_flows_are_left_out_and_active_flows_added(project: Project, embedder: LocalEmbedder) -> None:
    retrieval = FlowRetrieval(project, FlowRetrievalConfig(num_flows=3), embedder)
    conversation = Conversation("x", {"vip": False})
    assert "apply_loan" not in [f.id for f in await retrieval.shortlist(conversation, "I need a mortgage loan")]
    conversation.set_stack([{"frame_id": "a", "flow_id": "play_music", "step_id": "START", "frame_type": "regular", "type": "flow"}])
    assert "play_music" in [f.id for f in await retrieval.shortlist(conversation, "I need a mortgage loan")]


async def test_few_flows_need_no_embedding(project: Project) -> None:
    retrieval = FlowRetrieval(project, FlowRetrievalConfig(num_flows=20), None)
    assert not retrieval.needed
    flows = await retrieval.shortlist(Conversation("x", {"vip": False}), "anything")
    assert len(flows) == len(TOPICS) - 1, "all but the guarded flow"
