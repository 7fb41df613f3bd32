"""Custom actions: the runner interface, in-process rasa-sdk actions and the action-server client."""
