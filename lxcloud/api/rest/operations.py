"""REST: /api/v1/operations. `?wait=SECONDS` returns the moment the operation finishes."""

from __future__ import annotations

import asyncio
import threading

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.api.rest.schemas import OperationOut
from lxcloud.core.caller import Caller
from lxcloud.core.models import Operation
from lxcloud.services.cloud import Cloud

router = APIRouter(prefix="/api/v1/operations", tags=["operations"])


class Waiters:
    """asyncio futures woken from the worker threads when an operation finishes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._futs: dict[str, list[asyncio.Future[Operation]]] = {}
        self._mu = threading.Lock()

    def add(self, op_id: str) -> asyncio.Future[Operation]:
        """A future that gets the operation as it ended, on the caller's loop (a server runs
        one; a test client may run each request on a loop of its own)."""
        fut: asyncio.Future[Operation] = asyncio.get_running_loop().create_future()
        with self._mu:
            self._futs.setdefault(op_id, []).append(fut)
        return fut

    def discard(self, op_id: str, fut: asyncio.Future[Operation]) -> None:
        with self._mu:
            lst = self._futs.get(op_id, [])
            if fut in lst:
                lst.remove(fut)
            if not lst:
                self._futs.pop(op_id, None)

    def finished(self, op: Operation) -> None:
        with self._mu:
            futs = self._futs.pop(op.id, [])
        for f in futs:
            f.get_loop().call_soon_threadsafe(_resolve, f, op)


def _resolve(f: asyncio.Future[Operation], op: Operation) -> None:
    if not f.done():
        f.set_result(op)


@router.get("", response_model=list[OperationOut])
def list_operations(limit: int = Query(100, gt=0, le=1000), c: Cloud = Depends(cloud),
                    who: Caller = Depends(caller)) -> list[OperationOut]:
    return [OperationOut.of(o) for o in c.ops.list(limit, caller=who)]


@router.get("/{op_id}", response_model=OperationOut)
async def get_operation(op_id: str, request: Request,
                        wait: float = Query(0, ge=0, le=3600, description="seconds to wait for it"),
                        c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> OperationOut:
    return OperationOut.of(await awaited(request, c, op_id, who, wait))


async def awaited(request: Request, c: Cloud, op_id: str, who: Caller, wait: float,
                  op: Operation | None = None) -> Operation:
    """The operation once it has ended, or as it is after `wait` seconds (at once for 0): woken
    by the worker that ends it, which hands it over as it ended (no polling, no second read)."""
    if op is not None and (op.done or wait <= 0):
        return op
    waiters: Waiters | None = request.app.state.waiters if wait > 0 else None
    # registered before the look: an operation that ends between the two still wakes us
    fut = waiters.add(op_id) if waiters is not None else None
    try:
        if op is not None:   # ours, just begun: ended (in memory), or its worker wakes us
            op = c.ops.ended(op_id, caller=who) or op
        else:
            op = await run_in_threadpool(lambda: c.ops.get(op_id, caller=who))
        if fut is not None and not op.done:
            try:
                op = await asyncio.wait_for(fut, timeout=wait)
            except TimeoutError:
                op = await run_in_threadpool(lambda: c.ops.get(op_id, caller=who))
    finally:
        if fut is not None and waiters is not None:
            waiters.discard(op_id, fut)
    return op
