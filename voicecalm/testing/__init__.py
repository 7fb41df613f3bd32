"""Testing an assistant: the e2e test runner (`voicecalm test e2e`) and dialogue-understanding
evaluation of the command generator against `commands:` annotations (testing.md §1-§3)."""
