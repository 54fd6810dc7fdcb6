"""A confidential token: private balances, transfers and allowances.

Only an account itself may read its balance (queries are signed, so ``ctx.sender`` is the
caller). Balances and allowances are :class:`Mapping` fields: each entry is its own storage
key, so a transfer costs the same with ten holders or a hundred thousand. On-chain balance deposited to the contract arrives through the ``deposit``
handler; ``withdraw`` pays on-chain balance out with a message to the Contracts pallet.
"""

from phala.contracts.sdk import (
    AccountId,
    Contract,
    ContractError,
    Mapping,
    command,
    constructor,
    handler,
    query,
)


class Token(Contract):
    balances = Mapping()  # account -> amount
    allowances = Mapping()  # (owner, spender) -> amount

    @constructor
    def init(self, ctx, supply: int):
        if supply < 0:
            raise ContractError("the supply cannot be negative")
        self.owner = ctx.sender
        self.balances[ctx.sender] = supply
        self.supply = supply

    @command
    def transfer(self, ctx, to: AccountId, amount: int) -> bool:
        self.move(ctx.sender, to, amount)
        ctx.emit({"event": "transfer", "from": ctx.sender, "to": to, "amount": amount}, to=[to])
        return True

    @command
    def approve(self, ctx, spender: AccountId, amount: int) -> bool:
        if amount < 0:
            raise ContractError("an allowance cannot be negative")
        self.allowances[(ctx.sender, spender)] = amount
        ctx.emit({"event": "approval", "owner": ctx.sender, "spender": spender, "amount": amount}, to=[spender])
        return True

    @command
    def transfer_from(self, ctx, owner: AccountId, to: AccountId, amount: int) -> bool:
        key = (owner, ctx.sender)
        allowed = self.allowances.get(key, 0)
        if allowed < amount:
            raise ContractError("the allowance is too small")
        self.move(owner, to, amount)
        self.allowances[key] = allowed - amount
        ctx.emit({"event": "transfer", "from": owner, "to": to, "amount": amount}, to=[owner, to])
        return True

    @query
    def balance_of(self, ctx, who: AccountId) -> int:
        if ctx.sender != who:
            raise ContractError("only the account itself may read its balance")
        return self.balances.get(who, 0)

    @query
    def allowance(self, ctx, owner: AccountId, spender: AccountId) -> int:
        if ctx.sender != owner and ctx.sender != spender:
            raise ContractError("only the owner or the spender may read an allowance")
        return self.allowances.get((owner, spender), 0)

    @query
    def total_supply(self, ctx) -> int:
        return self.supply

    @handler
    def deposit(self, ctx, who: AccountId, amount: int) -> None:
        """The Contracts pallet locked ``amount`` of ``who``'s on-chain balance for us."""
        self.balances[who] = self.balances.get(who, 0) + amount
        self.supply += amount

    @command
    def withdraw(self, ctx, amount: int) -> bool:
        """Burn ``amount`` here and pay it out on chain to the sender."""
        if amount <= 0:
            raise ContractError("the amount must be positive")
        have = self.balances.get(ctx.sender, 0)
        if have < amount:
            raise ContractError("insufficient balance")
        self.balances[ctx.sender] = have - amount
        self.supply -= amount
        ctx.send("Contracts", {"payout": ctx.sender, "amount": amount})
        return True

    def move(self, source, dest, amount):
        if amount <= 0:
            raise ContractError("the amount must be positive")
        have = self.balances.get(source, 0)
        if have < amount:
            raise ContractError("insufficient balance")
        self.balances[source] = have - amount
        self.balances[dest] = self.balances.get(dest, 0) + amount
