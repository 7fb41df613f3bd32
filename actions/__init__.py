"""Custom actions of the VoiceCalm Bank example assistant (rasa-sdk).

``endpoints.yml`` loads this package in-process (``action_endpoint.actions_module``); it also
runs unchanged on a rasa-sdk action server: ``python -m rasa_sdk --actions actions``.

Every action reads and writes the demo bank in :mod:`actions.backend`.
"""
