"""The engine with real models (the shipped mel_2bar and mel_16bar, real onnxruntime sessions): the worker runs
each request on the model it carries and only the newest waiting request; a model switch while the old model
generates never plays the old model's answer; loads requested in a row end on the last one, with the engine,
the generation worker and the model loader on their own threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_engine import TRIGGER, Rig

from musicbridge.bridge.clock import Clock
from musicbridge.bridge.config import Params
from musicbridge.bridge.engine import AnswerReady, Engine, ModelReady
from musicbridge.bridge.generator import GenerationWorker, ModelRef, Request, make_phrase
from musicbridge.bridge.model_store import LoadRequest, LoadWorker, ModelStore
from musicbridge.bridge.scheduler import Scheduler
from musicbridge.runtime import SHIPPED_DIR, load_model


@pytest.fixture(scope="module")
def models() -> dict[str, ModelRef]:
    return {name: ModelRef.of(name, load_model(name)) for name in ("mel_2bar", "mel_16bar")}


def sample(model: ModelRef, seed: int, start: float = 4.0) -> Request:
    return Request("sample", start, 1, seed=seed, model=model)


def test_the_worker_runs_only_the_newest_request_on_its_own_model(models):
    phrases, errors = [], []
    done = threading.Event()
    worker = GenerationWorker(lambda phrase: (phrases.append(phrase), done.set()), lambda r, e: errors.append(e))
    for seed in (1, 2):
        worker.submit(sample(models["mel_2bar"], seed))
    newest = sample(models["mel_16bar"], 3)
    worker.submit(newest)  # all three wait before the worker starts: only this one is run
    worker.start()
    try:
        assert done.wait(30)
        time.sleep(0.2)  # nothing else comes
    finally:
        worker.stop()
    assert errors == [] and worker.superseded == 2
    (phrase,) = phrases
    assert phrase.request is newest
    expected = models["mel_16bar"].model.sample_prior(1, seed=3)[0, :16]  # its model's answer, cut to 1 bar
    assert np.array_equal(phrase.tokens, expected)


def test_a_switch_while_the_old_model_generates_never_plays_its_answer(models):
    old, new = models["mel_2bar"], models["mel_16bar"]
    rig = Rig("sample", model=old, bars=1)
    rig.run_to(TRIGGER)
    (in_flight,) = rig.requests
    old_answer = make_phrase(in_flight)  # the old model at work ...
    rig.engine.post(ModelReady(1, new))  # ... when the new one's load finishes
    rig.run_to(TRIGGER + 4)
    assert rig.engine.model is new
    rig.engine.post(AnswerReady(old_answer))
    new_request = rig.requests[-1]
    assert new_request.model is new
    new_answer = make_phrase(new_request)
    rig.engine.post(AnswerReady(new_answer))
    rig.engine.pump()
    assert rig.engine.counts["stale_model"] == 1 and rig.engine.counts["answers"] == 1
    assert rig.engine.last_phrase.request is new_request
    played = [(n.on_beat, n.pitch) for n in rig.scheduler.pending() if n.on_beat >= 8.0]
    assert played == [(8.0 + n.start, n.pitch) for n in new_answer.notes]  # the new model's notes, nothing else


def test_loads_in_a_row_end_on_the_last_requested(models):
    # The folder that really holds the shipped models: in a strict editable install SHIPPED_DIR holds symlinks into
    # core/shipped/, which the store's confinement refuses as links leading out of the models directory.
    shipped = Path(os.path.realpath(SHIPPED_DIR / "mel_2bar" / "model.json")).parent.parent
    store = ModelStore([str(shipped)])
    store.add("mel_2bar", activate=True)
    clock = Clock("internal", 300.0)  # a bar in 0.8 s
    scheduler = Scheduler(clock, None)
    switched = []
    worker: GenerationWorker

    def loaded(request: LoadRequest, before, after) -> None:
        engine.post(ModelReady(request.seq, ModelRef.of(request.resolved.name, after), request.requester))

    engine = Engine(Params(mode="sample", bars=1), clock, scheduler, lambda r: worker.submit(r), lambda m: 0,
                    ModelRef.of("mel_2bar", store.active), model_switched=switched.append)
    worker = GenerationWorker(lambda phrase: engine.post(AnswerReady(phrase)), lambda r, e: None)
    failed = []
    loader = LoadWorker(store, loaded, lambda r, message: failed.append(message), lambda r: None)
    clock.on_event = lambda kind, beat: None
    for part in (engine, worker, loader):
        part.start()
    try:
        clock.play(time.perf_counter())
        time.sleep(1.0)  # answers from the first model
        for n, name in enumerate(("mel_16bar", "mel_2bar", "mel_16bar")):
            loader.submit(LoadRequest(name, store.resolve(name), requester=n))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (switched and switched[-1] == 2):
            time.sleep(0.05)
        time.sleep(2.0)  # more than two bars: it stays there
        assert failed == [] and switched[-1] == 2  # the switch to the last one requested came last
        assert engine.view.model.name == "mel_16bar"
        assert engine.counts["answers"] >= 3
        assert engine.last_phrase.request.model is engine.view.model  # what plays now is the last model's
    finally:
        for part in (loader, worker, engine):
            part.stop()
