"""Message queue pallet: messages between the chain, accounts and off-chain senders.

(Skeleton: push_message, sync_offchain_message and outbound storage are being written.)
"""

from __future__ import annotations

from .frame import ModuleError, Pallet, RuntimeCall, RuntimeEvent

PALLET_INDEX = 6
NAME = "Mq"


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


PALLET = Pallet(name=NAME, index=PALLET_INDEX, call=Call, event=Event, error=Error)
