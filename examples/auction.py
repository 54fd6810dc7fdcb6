"""A sealed-bid auction: bids stay secret until the auction closes, then the winner (the
highest bid, the earliest on a tie) is revealed. The bids travel encrypted to the contract,
so neither the chain nor the other bidders see them."""

from phala.contracts.sdk import Contract, ContractError, command, constructor, query


class Auction(Contract):
    @constructor
    def init(self, ctx, item: str, closes_at_block: int):
        self.seller = ctx.sender
        self.item = item
        self.closes_at = closes_at_block
        self.bids = {}
        self.order = []
        self.winner = None

    @command
    def bid(self, ctx, amount: int) -> bool:
        if ctx.block_number >= self.closes_at:
            raise ContractError("the auction is closed")
        if amount <= 0:
            raise ContractError("a bid must be positive")
        if ctx.sender == self.seller:
            raise ContractError("the seller cannot bid")
        if ctx.sender not in self.bids:
            self.order.append(ctx.sender)
        self.bids[ctx.sender] = amount
        return True

    @command
    def close(self, ctx) -> dict:
        if ctx.block_number < self.closes_at:
            raise ContractError("the auction is still open")
        if self.winner is None:
            best = None
            for bidder in self.order:
                amount = self.bids[bidder]
                if best is None or amount > best[1]:
                    best = (bidder, amount)
            self.winner = {"bidder": best[0], "amount": best[1]} if best is not None else {}
            ctx.emit({"event": "closed", "item": self.item, "winner": self.winner})
        return self.winner

    @query
    def my_bid(self, ctx) -> int:
        return self.bids.get(ctx.sender, 0)

    @query
    def result(self, ctx) -> dict:
        if self.winner is None:
            raise ContractError("the auction has not closed yet")
        return self.winner

    @query
    def bidders(self, ctx) -> int:
        return len(self.order)
