"""Private voting: each account votes once (it may change its vote until the deadline); the
tally is revealed only after the deadline, and no one can read another's vote."""

from phala.contracts.sdk import Contract, ContractError, command, constructor, query


class Vote(Contract):
    @constructor
    def init(self, ctx, question: str, options: list[str], deadline_block: int):
        if len(options) < 2:
            raise ContractError("a vote needs at least two options")
        self.question = question
        self.options = options
        self.deadline = deadline_block
        self.votes = {}

    @command
    def vote(self, ctx, option: str) -> bool:
        if ctx.block_number >= self.deadline:
            raise ContractError("voting has closed")
        if option not in self.options:
            raise ContractError("no such option")
        self.votes[ctx.sender] = option
        return True

    @query
    def my_vote(self, ctx) -> str:
        return self.votes.get(ctx.sender, "")

    @query
    def tally(self, ctx) -> dict[str, int]:
        if ctx.block_number < self.deadline:
            raise ContractError("the tally is secret until the deadline")
        counts = {}
        for option in self.options:
            counts[option] = 0
        for voter in self.votes:
            choice = self.votes[voter]
            counts[choice] += 1
        return counts

    @query
    def turnout(self, ctx) -> int:
        return len(self.votes)
