from .contracts_support import chain, seq  # noqa: F401 - the fixtures of the Contracts pallet tests
from .harness import node  # noqa: F401 - the fixture
