"""Caller-audio fixtures for the voice tests (see README.md); `fixture_audio` reads them."""
