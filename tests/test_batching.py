"""The Batcher on its own: concurrent callers share model calls and each gets exactly its own answers."""

from __future__ import annotations

import asyncio
import random

import pytest

from adder import Adder, QueryError
from adder.batching import Batcher, BatchSettings


class Recording:
    """A real Adder that notes the size of every model call (results) and single call."""

    def __init__(self, fail_first: bool = False) -> None:
        self.adder = Adder()
        self.calls: list[int] = []
        self.fail_first = fail_first

    def __call__(self, query: str) -> int:
        self.calls.append(1)
        return self.adder(query)

    def results(self, queries):
        self.calls.append(len(queries))
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("the model broke")
        return self.adder.results(queries)


def requests(seed: int, count: int) -> list[list[str]]:
    rng = random.Random(seed)
    sizes = [rng.choice([1, 1, 1, 3, 40, 700]) for _ in range(count)]
    return [[f"{rng.randint(0, 999)}+{rng.randint(0, 999)}" for _ in range(size)] for size in sizes]


async def answer_all(batcher: Batcher, lists: list[list[str]]) -> list:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.answer(queries) for queries in lists))
    finally:
        await batcher.stop()


def test_concurrent_callers_share_calls_and_get_their_own_answers_in_order():
    model, lists = Recording(), requests(1, 200)
    replies = asyncio.run(answer_all(Batcher(model), lists))
    for queries, (results, batch) in zip(lists, replies):
        assert results == [eval(q) for q in queries]  # noqa: S307
        assert batch >= len(queries)
    assert len(model.calls) < len(lists) / 4  # most requests shared a call
    assert sum(model.calls) == sum(map(len, lists))  # every query answered once


def test_a_call_holds_whole_requests_up_to_max_batch():
    model, lists = Recording(), requests(2, 200)
    asyncio.run(answer_all(Batcher(model, BatchSettings(max_batch=1000)), lists))
    assert max(model.calls) <= 1000
    lists = [["1+1"] * 1500, ["2+2"] * 10]  # a request over the cap runs alone, whole
    model = Recording()
    replies = asyncio.run(answer_all(Batcher(model, BatchSettings(max_batch=1000)), lists))
    assert sorted(model.calls) == [10, 1500] and replies[0][0] == [2] * 1500


def test_bad_queries_are_errors_in_their_own_place():
    lists = [["3+10", "oops"], ["1000+1"], ["50+11"]] * 5
    replies = asyncio.run(answer_all(Batcher(Recording()), lists))
    for queries, (results, _) in zip(lists, replies):
        for query, result in zip(queries, results):
            if query in ("oops", "1000+1"):
                assert isinstance(result, QueryError)
            else:
                assert result == eval(query)  # noqa: S307


def test_a_model_fault_reaches_its_callers_and_the_worker_goes_on():
    model = Recording(fail_first=True)

    async def scenario():
        batcher = Batcher(model)
        batcher.start()
        with pytest.raises(RuntimeError, match="the model broke"):
            await batcher.answer(["1+1"] * 20)
        answered = await batcher.answer(["2+2"] * 20)
        await batcher.stop()
        return answered

    assert asyncio.run(scenario()) == ([4] * 20, 20)


def test_a_timed_wait_gathers_callers_that_arrive_within_it():
    model = Recording()

    async def scenario():
        batcher = Batcher(model, BatchSettings(wait=0.05))
        batcher.start()
        first = asyncio.ensure_future(batcher.answer(["1+1"] * 10))
        await asyncio.sleep(0.01)  # arrives while the first waits for company
        second = await batcher.answer(["2+2"] * 10)
        await batcher.stop()
        return await first, second

    first, second = asyncio.run(scenario())
    assert first == ([2] * 10, 20) and second == ([4] * 10, 20) and model.calls == [20]
