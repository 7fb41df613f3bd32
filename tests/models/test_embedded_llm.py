"""The real embedded model end to end: assembled from its PyPI parts, served by llama.cpp, called
through litellm with a GBNF grammar. Needs the `embedded` extra (`make test` installs it)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

from voicecalm.models.assemble import ensure_model, model_status, verify_model  # noqa: E402
from voicecalm.models.catalog import DEFAULT_LLM  # noqa: E402
from voicecalm.understanding.local_llm import (  # noqa: E402
    LocalEndpoint,
    close_shared_servers,
    local_endpoint,
    shared_server,
)

GRAMMAR = 'root ::= "start flow " ("a" | "b")'
MESSAGES = [
    {"role": "system", "content": "Answer with a command: `start flow a` (transfer money) or `start flow b` (block a card)."},
    {"role": "user", "content": "I lost my card, please block it"},
]


async def _ask(endpoint: LocalEndpoint, **options: object) -> str:
    response = await litellm.acompletion(
        model=endpoint.model,
        api_base=endpoint.api_base,
        api_key=endpoint.api_key,
        messages=MESSAGES,
        extra_body={"grammar": GRAMMAR},
        max_tokens=8,
        temperature=0,
        **{"timeout": 120, **options},
    )
    return response.choices[0].message.content


@pytest.mark.slow
async def test_real_model_assembles_serves_and_follows_a_grammar() -> None:
    started = time.monotonic()
    path = ensure_model(DEFAULT_LLM, progress=False)  # assembles 1.1 GB on the first run only
    assert verify_model(DEFAULT_LLM, progress=False) == path  # full sha256 of the assembled file
    assert path.stat().st_size == DEFAULT_LLM.size and model_status(DEFAULT_LLM).verified
    print(f"assembled and verified in {time.monotonic() - started:.1f} s")

    try:
        started = time.monotonic()
        # Started from an event loop and a thread that both end right after: the server must outlive them.
        endpoint = await asyncio.to_thread(lambda: asyncio.run(local_endpoint()))
        print(f"server started in {time.monotonic() - started:.1f} s")
        await asyncio.sleep(0.3)
        assert endpoint.model == f"openai/{DEFAULT_LLM.name}"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", endpoint.api_base)
        assert await local_endpoint() == endpoint  # one shared server per model and process
        server = shared_server(path)
        assert server.pid is not None

        text = await _ask(endpoint)
        assert re.fullmatch(r"start flow (a|b)", text.strip()), text

        with pytest.raises(litellm.Timeout):  # a timed-out call ends in an error, never a hang
            await _ask(endpoint, timeout=0.001, num_retries=0)

        # Supervision: a crashed server comes back by itself, and start() waits for it.
        old_pid = server.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while server.endpoint is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        restarted = await server.start()
        assert server.pid not in (None, old_pid)
        assert re.fullmatch(r"start flow (a|b)", (await _ask(restarted)).strip())
    finally:
        close_shared_servers()
    assert server.pid is None
