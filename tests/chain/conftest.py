from .harness import node  # noqa: F401 - the fixture
