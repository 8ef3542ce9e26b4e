"""Mode `similar` and /musicbridge/similar's input on the engine's fake clock (tests/test_engine.py's Rig), with a
real index (made from a test-made MIDI folder with the shipped mel_2bar) and the worker's own make_phrase: which
request at which bar line, which library phrase, which notes from which beat; what is refused, and why.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_embed import QUERY, TRANSPOSED, phrase, write_library
from test_engine import Rig

from musicbridge.bridge.engine import AnswerReady, ControlIn, ModelReady, NoteIn, Refused
from musicbridge.bridge.generator import ModelRef, make_phrase
from musicbridge.bridge.learn import Control, Learn
from musicbridge.bridge.library import NO_INDEX, LibraryError, load_index, nearest_phrases
from musicbridge.bridge.modes import trigger_beat
from musicbridge.bridge.osc import LEARN_TARGETS
from musicbridge.embeddings import build_index, midi_files
from musicbridge.runtime import load_model
from musicbridge.scales import parse_scale

QUERY_NOTES = [(pitch, start, start + length) for pitch, start, length in QUERY]  # beats 0..8, the last held to 8


@pytest.fixture(scope="module")
def shipped():
    return load_model("mel_2bar", threads=1)


@pytest.fixture(scope="module")
def library(tmp_path_factory, shipped):
    """The test library of test_embed (its query's copy up a fourth among eight other phrases) and the query itself."""
    folder = write_library(tmp_path_factory.mktemp("similar") / "lib")
    phrase(QUERY).save(folder / "query.mid")  # an exact copy of what will be played: mode similar must not echo it
    return load_index(build_index(shipped, midi_files([str(folder)])).save(folder.parent / "lib.npz"))


class LibraryRig(Rig):
    """The engine on the fake clock, answering with the shipped model, the library loaded (None: no --index)."""

    def __init__(self, model: ModelRef, library, mode: str = "continue", **params):
        super().__init__(mode, model, **params)
        self.engine.index = library  # as serve --index gives it to the engine at construction

    def play_query(self) -> None:
        """The query, in time, up to its last note, held over the trigger point of beat 8 (so the answer to bar
        2 can come before its bar line)."""
        self.play(*QUERY_NOTES[:-1])
        pitch, start, _ = QUERY_NOTES[-1]
        self.run_to(start)
        self.engine.post(NoteIn(self.t, self.beat, 0, pitch, 100))
        self.engine.pump()
        self.run_to(trigger_beat(8.0))


def test_mode_similar_plays_the_nearest_library_phrase_from_the_next_bar_line(shipped, library):
    rig = LibraryRig(ModelRef.of("mel_2bar", shipped), library)
    rig.engine.set_mode("similar")
    rig.play_query()
    assert [(r.kind, r.start_beat) for r in rig.requests] == [("similar", 4.0), ("similar", 8.0)]  # each bar played
    request = rig.requests[-1]
    assert request.index is library and request.model is rig.model and request.reference_density is None
    answer = make_phrase(request)  # the generation worker's own code
    # The played window is in the library as query.mid; the answer is the nearest phrase that is not a copy of it.
    assert not np.array_equal(library.index.tokens[answer.matches[0].row], request.tokens)
    assert (answer.matches[0].file.endswith("query_up_a_fourth.mid"), answer.matches[0].bar) == (True, 0)
    assert answer.latents[0].shape == (1, shipped.z_size)  # the query's μ, for the session log
    rig.engine.post(AnswerReady(answer))
    rig.engine.pump()
    # It plays from the bar line after the phrase: the library's phrase, up a fourth, on the query's beats.
    assert rig.scheduled(since=8.0) == [(8.0 + start, pitch + TRANSPOSED) for pitch, start, _ in QUERY_NOTES]
    assert rig.engine.counts["answers"] == 1
    rig.run_to(8.0)
    rig.engine.post(NoteIn(rig.t, rig.beat, 0, QUERY_NOTES[-1][0], 0))  # the last note ends on the bar line
    rig.run_to(trigger_beat(16.0))
    assert len(rig.requests) == 2  # bars 3 and 4: nothing played, nothing asked


def test_similar_input_is_the_window_capture_reads(shipped, library):
    rig = LibraryRig(ModelRef.of("mel_2bar", shipped), library, mode="off")
    rig.play(*QUERY_NOTES)
    rig.run_to(8.4)  # a late press: the nearest bar line (8) still counts
    tokens, model, found = rig.engine.similar_input()
    assert model is rig.model and found is library
    rig.engine.capture_slot("a")
    assert np.array_equal(tokens, rig.engine.mode.slots["a"])
    # The query's own window is in the library: a search (unlike the mode) finds it first, its copy second.
    rows, _ = nearest_phrases(shipped, library, tokens, 2)
    mu, _ = shipped.encode(tokens[None, :])
    assert [m.file.rsplit("/", 1)[1] for m in library.index.nearest(mu[0], 2)] == ["query.mid",
                                                                                 "query_up_a_fourth.mid"]
    assert not any(np.array_equal(row, tokens) for row in rows)
    rig.run_to(20.0)
    with pytest.raises(Refused, match="nothing played in the 2 bars before beat 20"):
        rig.engine.similar_input()


def test_without_an_index_similar_is_refused_with_a_sentence(shipped):
    rig = LibraryRig(ModelRef.of("mel_2bar", shipped), None)
    with pytest.raises(Refused, match="mode similar: no library index loaded: start serve with --index") as refused:
        rig.engine.set_mode("similar")
    assert refused.value.code == "not_ready" and rig.engine.params.mode == "continue"
    with pytest.raises(Refused, match="^no library index"):
        rig.engine.similar_input()
    assert NO_INDEX.startswith("no library index")
    # A learned pad steps through the modes it can choose now: without an index, similar is not one of them.
    rig.engine.learn = Learn(LEARN_TARGETS)
    sent = []
    rig.engine.dispatch = lambda address, args: sent.append((address, args))
    pad = Control("note", 9, 36)
    rig.engine.learn_arm("mode")
    rig.engine.post(ControlIn(rig.t, rig.beat, pad, 100))
    rig.engine.pump()
    rig.engine.set_mode("mutate")
    rig.engine.post(ControlIn(rig.t, rig.beat, pad, 100))
    rig.engine.pump()
    assert sent == [("/musicbridge/mode", ("off",))]  # mutate → off: similar skipped


def test_a_switch_to_a_model_the_index_does_not_match_stops_similar_without_crashing(shipped, library):
    rig = LibraryRig(ModelRef.of("mel_2bar", shipped), library, mode="similar")
    other = ModelRef.of("mel_16bar", load_model("mel_16bar", threads=1))
    rig.engine.post(ModelReady(1, other))
    rig.run_to(trigger_beat(4.0))  # switched at the first bar line
    assert rig.engine.model is other and rig.engine.params.mode == "similar"
    rig.play_query()
    assert rig.requests == []  # the mode asks nothing of an index that cannot answer this model
    for command in (rig.engine.similar_input, rig.engine.generate):
        with pytest.raises(Refused, match="lib.npz was embedded with mel_2bar .* not with mel_16bar") as refused:
            command()
        assert refused.value.code == "not_ready"
    rig.engine.set_mode("continue")
    with pytest.raises(Refused, match="mode similar: lib.npz was embedded with mel_2bar"):
        rig.engine.set_mode("similar")


def test_the_scale_lock_and_copies_are_left_out_of_the_answers(shipped, library):
    tokens = library.index.tokens[library.index.files.index(next(f for f in library.index.files
                                                                 if f.endswith("/query.mid")))].astype(np.int64)
    rows, matches = nearest_phrases(shipped, library, tokens, 3)
    assert len(rows) == 3 and not any(np.array_equal(row, tokens) for row in rows)
    assert matches[0].file.endswith("query_up_a_fourth.mid")
    # Up a fourth, the query leaves C major (its B becomes an E, its F a B flat): under a C major lock the copy is
    # left out, and every phrase played is in the scale.
    c_major = parse_scale("C:major")
    rows, matches = nearest_phrases(shipped, library, tokens, 3, scale=c_major)
    assert not any(m.file.endswith("query_up_a_fourth.mid") for m in matches)
    pitches = {n.pitch % 12 for row in rows for n in shipped.codec.decode(row)}
    assert pitches <= {0, 2, 4, 5, 7, 9, 11}
    with pytest.raises(LibraryError, match="inside the scale lock"):
        nearest_phrases(shipped, library, tokens, 1, scale=parse_scale("C#:major_pentatonic"))
