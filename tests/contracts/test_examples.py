"""The example contracts, run with the local harness in the real sandbox (no chain): the
confidential token, the sealed-bid auction and the private vote."""

from __future__ import annotations

from pathlib import Path

import pytest

from phala.contracts.harness import HarnessError, LocalContract

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALICE, BOB, CAROL = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


@pytest.fixture
def token():
    with LocalContract.from_file(EXAMPLES / "token.py", 1_000, sender=ALICE) as contract:
        yield contract


def test_token_transfers_with_events_and_gas(token):
    result = token.command("transfer", BOB, 10, sender=ALICE)
    assert result.ok and result.value is True
    assert result.events == [{"event": "transfer", "from": ALICE, "to": BOB, "amount": 10}]
    assert result.gas_used > 0
    assert token.query("balance_of", BOB, sender=BOB).value == 10
    assert token.query("balance_of", ALICE, sender=ALICE).value == 990


def test_only_the_owner_reads_a_balance(token):
    refused = token.query("balance_of", ALICE, sender=BOB)
    assert refused.status == "error" and "only the account itself" in refused.message


def test_a_failed_transfer_changes_nothing(token):
    failed = token.command("transfer", BOB, 5_000, sender=ALICE)
    assert failed.status == "error" and "insufficient balance" in failed.message
    assert token.query("balance_of", ALICE, sender=ALICE).value == 1_000


def test_wrong_arguments_are_clear_errors(token):
    assert "must be an AccountId" in token.command("transfer", b"short", 1, sender=ALICE).message
    assert "must be int, got str" in token.command("transfer", BOB, "1", sender=ALICE).message
    assert "takes 2 argument(s), got 1" in token.command("transfer", BOB, sender=ALICE).message
    assert "has no command 'mint'" in token.command("mint", 1, sender=ALICE).message


def test_allowances(token):
    assert token.command("approve", CAROL, 50, sender=ALICE).ok
    assert token.command("transfer_from", ALICE, BOB, 20, sender=CAROL).ok
    assert token.query("allowance", ALICE, CAROL, sender=CAROL).value == 30
    assert "allowance is too small" in token.command("transfer_from", ALICE, BOB, 31, sender=CAROL).message


def test_deposit_and_withdraw(token):
    assert token.handle("deposit", CAROL, 5).ok
    assert token.query("balance_of", CAROL, sender=CAROL).value == 5
    paid = token.command("withdraw", 3, sender=CAROL)
    assert paid.messages == [("Contracts", {"payout": CAROL, "amount": 3})]
    assert token.query("total_supply").value == 1_002


def test_sealed_bid_auction_reveals_only_at_close():
    with LocalContract.from_file(EXAMPLES / "auction.py", "vase", 5, sender=ALICE) as auction:
        assert auction.command("bid", 10, sender=BOB).ok
        assert auction.command("bid", 12, sender=CAROL).ok
        assert auction.query("my_bid", sender=BOB).value == 10
        assert "not closed yet" in auction.query("result").message
        assert "still open" in auction.command("close", sender=ALICE).message
        closed = auction.command("close", sender=ALICE)
        assert closed.value == {"bidder": CAROL, "amount": 12}
        assert closed.events == [{"event": "closed", "item": "vase", "winner": closed.value}]
        assert "closed" in auction.command("bid", 99, sender=BOB).message


def test_private_vote_tally_only_after_the_deadline():
    with LocalContract.from_file(EXAMPLES / "voting.py", "Ship it?", ["yes", "no"], 5, sender=ALICE) as vote:
        assert vote.command("vote", "yes", sender=BOB).ok
        assert vote.command("vote", "no", sender=CAROL).ok
        assert "secret until the deadline" in vote.query("tally").message
        assert vote.query("my_vote", sender=BOB).value == "yes"
        assert "no such option" in vote.command("vote", "maybe", sender=ALICE).message
        vote.advance()  # the deadline passes
        assert "voting has closed" in vote.command("vote", "no", sender=ALICE).message
        assert vote.query("tally").value == {"yes": 1, "no": 1}


def test_a_contract_that_does_not_load_is_a_clear_error():
    with pytest.raises(HarnessError, match="line 2: import of 'os'"):
        LocalContract("x = 1.5\nimport os\n", sender=ALICE)


RECORDS = """
from phala.contracts.sdk import AccountId, Contract, Record, command, constructor, query

Offer = Record("Offer", bidder=AccountId, amount=int, note=str)


class Book(Contract):
    @constructor
    def init(self, ctx):
        self.offers = []

    @command
    def place(self, ctx, offer: Offer) -> Offer:
        self.offers.append(offer)
        return Offer(bidder=offer["bidder"], amount=offer["amount"] * 2, note="doubled")

    @query
    def all(self, ctx) -> list[Offer]:
        return self.offers
"""


def test_records_are_checked_at_the_edge():
    with LocalContract(RECORDS, sender=ALICE) as book:
        good = {"bidder": BOB, "amount": 3, "note": "hi"}
        placed = book.command("place", good, sender=ALICE)
        assert placed.value == {"bidder": BOB, "amount": 6, "note": "doubled"}
        assert book.query("all").value == [good]
        missing = book.command("place", {"bidder": BOB, "amount": 3}, sender=ALICE)
        assert "must be a Offer record with fields bidder, amount, note" in missing.message
        wrong = book.command("place", {"bidder": b"x", "amount": 3, "note": ""}, sender=ALICE)
        assert "argument 'offer'.bidder must be an AccountId" in wrong.message
        assert book.query("all").value == [good]


def test_results_are_checked_against_their_annotation():
    source = RECORDS.replace("return self.offers", "return 42")
    with LocalContract(source, sender=ALICE) as book:
        wrong = book.query("all")
        assert wrong.status == "error" and "the result must be list, got int" in wrong.message
