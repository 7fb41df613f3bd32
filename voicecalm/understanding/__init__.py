"""Turning user messages into commands without the LLM: payloads (and, later, DTMF)."""
