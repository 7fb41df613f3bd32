from tests.model_server import fake_model, model  # noqa: F401  (fixtures shared by several folders)
