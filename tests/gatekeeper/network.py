"""The in-process network the gatekeeper and contract tests share (it lives in
``phala.devnet.inprocess`` so the benchmarks can use it too)."""

from phala.devnet.inprocess import ALICE, Enclave, Identity, Member, Network

__all__ = ["ALICE", "Enclave", "Identity", "Member", "Network"]
