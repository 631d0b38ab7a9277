"""Continuous batching on the real embedded model."""

import asyncio
import json
import time

import pytest

from gatehouse.engines.base import EngineBusy, EngineFailure, UpstreamRejected

from engine_support import make_engine

PROMPTS = ["1, 2, 3, 4,", "The history of Rome is", "Monday, Tuesday,", "A, B, C,", "Water boils at",
           "The recipe needs flour,"]


def complete(engine, prompt, max_tokens=24, caller="t", **extra):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}
    return engine.call("completions", body, False, caller)


async def collect_stream(engine, body, endpoint="completions", caller="t"):
    reply = await engine.call(endpoint, body, True, caller)
    return [event async for event in reply.stream], reply.usage


async def all_of(*coroutines):
    return await asyncio.gather(*coroutines)


def texts(replies):
    return [reply.body["choices"][0]["text"] for reply in replies]


def test_concurrent_requests_all_complete(engine, loop):
    replies = loop.run_until_complete(all_of(*(complete(engine, p) for p in PROMPTS)))  # 6 requests, 4 slots
    for reply in replies:
        choice = reply.body["choices"][0]
        assert choice["text"] and choice["finish_reason"] in ("length", "stop")
        assert reply.usage.completion_tokens == 24 or choice["finish_reason"] == "stop"
        assert reply.usage.prompt_tokens == reply.body["usage"]["prompt_tokens"] > 1


def test_sequences_in_one_batch_never_see_each_other(engine, loop):
    """Each sequence continues its own prompt: strongly determined continuations survive
    any batch composition, and would not if positions, caches or sequence ids were mixed."""
    expected = {"1, 2, 3, 4, 5, 6, 7, 8,": " 9, 10", "A, B, C, D, E, F,": " G, H",
                "Monday, Tuesday, Wednesday,": " Thursday"}
    prompts = list(expected) * 2  # six requests on four slots: batches of changing make-up
    replies = loop.run_until_complete(all_of(*(complete(engine, p, max_tokens=8) for p in prompts)))
    for prompt, text in zip(prompts, texts(replies), strict=True):
        assert text.startswith(expected[prompt]), (prompt, text)


def test_each_sequence_samples_with_its_own_seed(shared_models_dir):
    """Samplers are per sequence and seeded per request: from the same logits, the same seed
    draws the same tokens and other seeds draw others."""
    from gatehouse.engines.embedded import sampling_params
    from gatehouse.engines.llama_native import BatchContext, NativeModel, make_sampler
    from gatehouse.engines.model_files import builtin_model_path

    params = sampling_params({"temperature": 1.5, "top_k": 0, "top_p": 1.0, "seed": 1234})
    assert (params.temperature, params.top_k, params.seed) == (1.5, 0, 1234)
    model = NativeModel(str(builtin_model_path(shared_models_dir)))
    context = BatchContext(model, 1, 256, 64, None)
    try:
        prompt = [model.bos, *model.tokenize("My favourite animal is", False)]
        context.clear_batch()
        for position, token in enumerate(prompt):
            last = context.add(token, position, 0, position == len(prompt) - 1)
        context.decode()

        def draws(seed):
            sampler = make_sampler(sampling_params({"temperature": 1.5, "top_k": 0, "seed": seed}), model.n_vocab, 0)
            return [context.sample(sampler, last) for _ in range(12)]

        assert draws(1234) == draws(1234)
        assert len({tuple(draws(1234)), tuple(draws(99)), tuple(draws(7))}) == 3
    finally:
        context.close()
        model.close()


def test_max_tokens_is_exact(engine, loop):
    reply = loop.run_until_complete(complete(engine, "1, 2, 3, 4, 5, 6,", max_tokens=9))
    assert reply.usage.completion_tokens == 9 and reply.body["choices"][0]["finish_reason"] == "length"


def test_stop_sequences_cut_exactly_and_never_leak(engine, loop):
    prompt = "1, 2, 3, 4, 5, 6,"  # the model counts on: " 7, 8, 9, 10, …"
    reply = loop.run_until_complete(complete(engine, prompt, max_tokens=20, stop=[" 9", "zzz"]))
    assert reply.body["choices"][0]["text"] == " 7, 8,"
    assert reply.body["choices"][0]["finish_reason"] == "stop"
    events, _ = loop.run_until_complete(collect_stream(engine, {"prompt": prompt, "max_tokens": 20,
                                                                "temperature": 0, "stop": [" 9"]}))
    chunks = [json.loads(event[6:]) for event in events if event.startswith(b"data: {")]
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == " 7, 8,"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_prompt_over_the_context_is_refused(engine, loop):
    with pytest.raises(UpstreamRejected) as info:
        loop.run_until_complete(complete(engine, "word " * 1100))
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"
    with pytest.raises(UpstreamRejected):
        loop.run_until_complete(complete(engine, "hello", max_tokens=1024))


def test_prefix_cache_hits_are_reported(engine, loop):
    system = "You are a careful assistant who answers in one sentence. " * 20
    body = lambda q: {"messages": [{"role": "system", "content": system}, {"role": "user", "content": q}],  # noqa: E731
                      "max_tokens": 4, "temperature": 0}
    first = loop.run_until_complete(engine.call("chat/completions", body("first?"), False, "t"))
    second = loop.run_until_complete(engine.call("chat/completions", body("second?"), False, "t"))
    prompt_tokens = second.body["usage"]["prompt_tokens"]
    cached = second.body["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert prompt_tokens > 200 and cached >= prompt_tokens - 10
    assert first.body["usage"]["prompt_tokens_details"]["cached_tokens"] < cached


def test_concurrent_requests_share_a_prefix_from_a_busy_slot(engine, loop):
    system = "Reply as a pirate would, with plenty of arrs and ahoys. " * 20
    body = lambda q, n: {"messages": [{"role": "system", "content": system}, {"role": "user", "content": q}],  # noqa: E731
                         "max_tokens": n, "temperature": 0}

    async def staggered():
        long = asyncio.ensure_future(engine.call("chat/completions", body("tell me a long story", 60), False, "a"))
        await asyncio.sleep(1.0)  # the first is decoding by now, holding the prefix
        short = await engine.call("chat/completions", body("hi", 2), False, "b")
        return await long, short

    _, short = loop.run_until_complete(staggered())
    assert short.body["usage"]["prompt_tokens_details"]["cached_tokens"] > 200


def test_a_closed_stream_frees_its_slot(shared_models_dir, loop):
    engine = make_engine(shared_models_dir, slots=1, max_waiting=0)
    loop.run_until_complete(engine.start())
    try:
        async def abandon():
            reply = await engine.call("completions", {"prompt": "1, 2, 3,", "max_tokens": 900, "temperature": 0},
                                      True, "a")
            await reply.stream.__anext__()
            await reply.stream.aclose()
            started = time.monotonic()
            while True:
                try:
                    await complete(engine, "hi", max_tokens=1)
                    return time.monotonic() - started
                except EngineBusy:
                    await asyncio.sleep(0.02)

        assert loop.run_until_complete(abandon()) < 1.0
    finally:
        loop.run_until_complete(engine.close())


def test_full_queue_is_busy_and_queued_requests_are_served_fairly(shared_models_dir, loop):
    engine = make_engine(shared_models_dir, slots=1, max_waiting=6)
    loop.run_until_complete(engine.start())
    try:
        async def flood():
            order = []

            async def tracked(name, caller, max_tokens=3):
                await complete(engine, "1, 2,", max_tokens=max_tokens, caller=caller)
                order.append(name)

            blocker = asyncio.ensure_future(tracked("blocker", "someone", max_tokens=80))
            await asyncio.sleep(0.3)  # the only slot is busy from here on
            tasks = [asyncio.ensure_future(tracked(f"a{i}", "flooder")) for i in range(5)]
            await asyncio.sleep(0.05)
            tasks.append(asyncio.ensure_future(tracked("b0", "neighbour")))
            await asyncio.sleep(0.05)
            with pytest.raises(EngineBusy):  # six waiting: the queue is full
                await complete(engine, "x", caller="late")
            await asyncio.gather(blocker, *tasks)
            return order

        order = loop.run_until_complete(flood())
        assert order[0] == "blocker" and sorted(order[1:]) == ["a0", "a1", "a2", "a3", "a4", "b0"]
        assert order.index("b0") <= 2, order  # served after one flooder request, not after all five
    finally:
        loop.run_until_complete(engine.close())


def test_shutdown_finishes_running_work_and_refuses_the_queue(shared_models_dir, loop):
    engine = make_engine(shared_models_dir, slots=1, max_waiting=4)
    loop.run_until_complete(engine.start())

    async def scenario():
        running = asyncio.ensure_future(complete(engine, "1, 2, 3,", max_tokens=30))
        await asyncio.sleep(0.2)
        queued = asyncio.ensure_future(complete(engine, "4, 5, 6,", max_tokens=30))
        await asyncio.sleep(0.1)
        await engine.close()
        return await asyncio.gather(running, queued, return_exceptions=True)

    running, queued = loop.run_until_complete(scenario())
    assert running.usage.completion_tokens == 30
    assert isinstance(queued, EngineFailure) and queued.kind == "shutting_down"


def test_metrics_are_exported(engine, loop):
    from prometheus_client import generate_latest

    loop.run_until_complete(complete(engine, "metrics please", max_tokens=3))
    text = generate_latest().decode()
    for name in ("gatehouse_engine_requests_running", "gatehouse_engine_requests_waiting",
                 "gatehouse_engine_kv_cache_usage_ratio", "gatehouse_engine_prefix_cache_hit_tokens_total",
                 "gatehouse_engine_time_to_first_token_seconds_count",
                 "gatehouse_engine_inter_token_latency_seconds_count",
                 "gatehouse_engine_generation_tokens_per_second"):
        assert f'{name}{{deployment="test-embedded"}}' in text, name
    count = [line for line in text.splitlines()
             if line.startswith('gatehouse_engine_time_to_first_token_seconds_count{deployment="test-embedded"}')]
    assert float(count[0].split()[-1]) >= 1


def test_unseeded_requests_draw_fresh_randomness(engine, loop):
    def unseeded():
        return complete(engine, "My favourite animal is", temperature=1.5, top_k=0)

    answers = [texts([loop.run_until_complete(unseeded())])[0] for _ in range(3)]
    assert len(set(answers)) == 3


def test_the_waiting_limit_holds_under_a_burst_and_ignores_callers_who_left(shared_models_dir, loop):
    engine = make_engine(shared_models_dir, slots=1, max_waiting=2)
    loop.run_until_complete(engine.start())
    try:
        async def burst():
            blocker = asyncio.ensure_future(complete(engine, "1, 2,", max_tokens=60, caller="a"))
            await asyncio.sleep(0.3)
            waiting = [asyncio.ensure_future(complete(engine, "3, 4,", max_tokens=2, caller=f"w{i}"))
                       for i in range(10)]
            await asyncio.sleep(0.05)
            refused = [task for task in waiting if task.done() and isinstance(task.exception(), EngineBusy)]
            assert len(refused) == 8  # exactly max_waiting got in
            queued = [task for task in waiting if not task.done()]
            for task in queued:
                task.cancel()  # their callers leave
            await asyncio.sleep(0.05)
            again = [asyncio.ensure_future(complete(engine, "5, 6,", max_tokens=2, caller=f"n{i}")) for i in range(2)]
            done = await asyncio.gather(*again, return_exceptions=True)
            await blocker
            return done

        results = loop.run_until_complete(burst())
        assert all(not isinstance(result, Exception) for result in results), results
    finally:
        loop.run_until_complete(engine.close())


def test_repetition_penalties_are_applied_per_sequence(engine, loop):
    prompt = "the cat the cat the cat the cat"
    plain, penalised = texts(loop.run_until_complete(all_of(
        complete(engine, prompt, max_tokens=16),
        complete(engine, prompt, max_tokens=16, frequency_penalty=2.0, presence_penalty=2.0))))
    assert plain.count(" cat") > penalised.count(" cat")


def test_tokens_are_counted_by_the_models_own_tokenizer(engine, loop):
    text = "Gatehouse counts tokens the way the model will see them. " * 200  # long: counted off the loop
    assert loop.run_until_complete(engine.count_tokens(text)) == len(engine.model.tokenize(text, False))
    assert loop.run_until_complete(engine.count_tokens("hello")) == len(engine.model.tokenize("hello", False)) > 0
