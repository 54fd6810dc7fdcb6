"""phala: a confidential smart-contract blockchain in Python."""
