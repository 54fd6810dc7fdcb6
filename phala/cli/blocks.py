"""``phala blocks``: finalized blocks with their extrinsics (signer, call) and events."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from phala.client import chain
from phala.client.chain import ChainEvent, VerificationError
from phala.client.describe import call_args, call_name, decode_call, dispatch_outcome
from phala.client.rpc import RpcClient, run
from phala.core.codec import DecodeError
from phala.core.types import Extrinsic, Header, decode_extrinsic

from .common import DEFAULT_RPC, RpcOption, console, handle_errors
from .render import Formatter, timestamp

FETCH_CONCURRENCY = 8


@dataclass
class ExtrinsicView:
    signer: bytes | None
    call: str
    args: dict
    events: list[ChainEvent] = field(default_factory=list)


@dataclass
class BlockView:
    header: Header
    extrinsics: list[ExtrinsicView]
    block_events: list[ChainEvent]  # initialization and finalization


async def load_block(client: RpcClient, at: bytes) -> BlockView:
    """A block, its decoded extrinsics and its events, by hash."""
    block, evs = await asyncio.gather(chain.get_block(client, at), chain.events(client, at))
    if block is None:
        raise VerificationError(f"the node does not serve block 0x{at.hex()}")
    views = []
    for raw in block.block.extrinsics:
        try:
            xt = decode_extrinsic(raw)
        except DecodeError:
            views.append(ExtrinsicView(None, "<undecodable extrinsic>", {}))
            continue
        signer = xt.signer if isinstance(xt, Extrinsic) else None  # unsigned: no account
        call = decode_call(xt.call)
        if call is None:
            views.append(ExtrinsicView(signer, "<unknown call>", {}))
        else:
            views.append(ExtrinsicView(signer, call_name(call), call_args(call)))
    for ev in evs:
        if ev.phase is not None and 0 <= ev.phase < len(views):
            views[ev.phase].events.append(ev)
    return BlockView(block.block.header, views, [ev for ev in evs if ev.phase is None])


async def load_range(client: RpcClient, first: int, last: int) -> list[BlockView]:
    """Blocks ``first..last`` by number, a few requests at a time."""
    slots = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(number: int) -> BlockView:
        async with slots:
            at = await chain.block_hash(client, number)
            if at is None:
                raise VerificationError(f"the node has no finalized block #{number}")
            return await load_block(client, at)

    return list(await asyncio.gather(*(one(n) for n in range(first, last + 1))))


def _describe_extrinsics(view: BlockView, fmt: Formatter) -> Group:
    lines: list[Text] = []
    for i, xt in enumerate(view.extrinsics):
        signer = fmt.address(xt.signer) if xt.signer else "unsigned"
        args = ", ".join(f"{k}={fmt.value(k, v)}" for k, v in xt.args.items())
        outcome = dispatch_outcome(xt.events)
        mark = "" if outcome is None else (" ✓" if outcome.ok else f" ✗ {outcome.error}")
        line = Text(f"{i}: ", style="dim")
        line.append(signer, style="cyan")
        line.append(" → ")
        line.append(f"{xt.call}({args})", style="bold")
        line.append(mark, style="green" if outcome and outcome.ok else "red")
        lines.append(line)
        for ev in xt.events:
            lines.append(Text(f"    {fmt.event(ev)}", style="dim"))
    for ev in view.block_events:
        lines.append(Text(f"block: {fmt.event(ev)}", style="dim"))
    return Group(*lines)


def blocks_table(views: list[BlockView], fmt: Formatter, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("#", justify="right", style="bold")
    table.add_column("hash")
    table.add_column("time (UTC)")
    table.add_column("xts", justify="right")
    table.add_column("extrinsics and events")
    for view in views:
        h = view.header
        table.add_row(
            str(h.number),
            "0x" + h.hash.hex()[:12] + "…",
            timestamp(h.timestamp),
            str(len(view.extrinsics)),
            _describe_extrinsics(view, fmt),
        )
    return table


@handle_errors
def blocks(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following new finalized blocks.")] = False,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="How many recent blocks to show.")
    ] = 10,
    rpc: RpcOption = DEFAULT_RPC,
) -> None:
    """Show the latest finalized blocks; with --follow, a live view as new ones arrive."""
    try:
        run(_blocks(rpc, follow, count))
    except KeyboardInterrupt:
        pass  # Ctrl-C ends --follow


async def _blocks(rpc: str, follow: bool, count: int) -> None:
    async with RpcClient(rpc) as client:
        fmt = Formatter(await chain.properties(client))
        if not follow:
            head = await chain.get_header(client)
            if head is None:
                raise VerificationError("the node has no finalized head")
            views = await load_range(client, max(0, head.number - count + 1), head.number)
            console.print(blocks_table(views, fmt, title="finalized blocks"))
            return
        await _follow(client, fmt, count)


async def _follow(client: RpcClient, fmt: Formatter, count: int) -> None:
    recent: collections.deque[BlockView] = collections.deque(maxlen=count)
    title = "finalized blocks (following; Ctrl-C to stop)"
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    async with client.subscribe("chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads") as heads:
        head = await chain.get_header(client)
        if head is None:
            raise VerificationError("the node has no finalized head")
        recent.extend(await load_range(client, max(0, head.number - count + 1), head.number))
        next_number = head.number + 1

        def show(new: list[BlockView]) -> None:
            if live is not None:
                live.update(blocks_table(list(recent), fmt, title), refresh=True)
                return
            for view in new:  # not a terminal: one line per block, one per extrinsic and event
                h = view.header
                console.print(
                    f"#{h.number} 0x{h.hash.hex()} {timestamp(h.timestamp)} "
                    f"{len(view.extrinsics)} extrinsics",
                    soft_wrap=True,
                )
                console.print(_describe_extrinsics(view, fmt), soft_wrap=True)

        if live is not None:
            live.start()
        try:
            show(list(recent))
            async for obj in heads:
                header = chain.header_from_json(obj)
                if header.number < next_number:
                    continue
                new = await load_range(client, next_number, header.number - 1)
                new.append(await load_block(client, header.hash))
                next_number = header.number + 1
                recent.extend(new)
                show(new)
        finally:
            if live is not None:
                live.stop()
