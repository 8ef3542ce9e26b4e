"""The Max for Live device's answer player (max_patches/musicbridge_player.js), run by node.

The harness loads the script as Max would (its outlets stubbed) and plays the device's tick path beside it: on each
16th the tick path reads the step from the [coll] the script edits and plays its events (the scheduler thread);
the script hears of the tick afterwards (js runs deferred). A scenario says when the tick path fires, when the
script hears it, and when the daemon's /musicbridge/gen/* phrases arrive, so the script can be made to lag
behind the tick path. What the tick path played (and the script's own note-offs) goes through a synth model that
records every note as (phrase, pitch, on step, off step); each phrase has its own pitches, so a note is known by
its pitch.

Checked: the newest answer plays from its start and an older one's rest is removed (no two phrases sound
together), late answers, /musicbridge/variation replies (in place, or from the next bar line when their phrase is
over), stop, Panic and relocation, and that a script lagging behind the tick path never leaves a note hanging.
Without lag, random sessions play exactly what a reference written another way (who owns each step) says.
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PLAYER = Path(__file__).resolve().parents[1] / "max_patches" / "musicbridge_player.js"
STEPS_PER_BEAT = 4
STEPS_PER_BAR = 16

HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const [script, scenarioPath] = process.argv.slice(2);
const coll = new Map();  // the device's [coll]: step -> [p, v, p, v, ...]
const played = [];  // [step, pitch, velocity]: the tick path's events, and the script's own at the last fired step
const queue = [];  // ticks the tick path fired that the script has not heard yet
let fired = -1;
const context = {
  post: () => {},
  outlet: (n, ...args) => {
    const atoms = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
    if (n === 1) { played.push([fired, atoms[0], atoms[1]]); return; }
    if (n !== 0) throw new Error("no outlet " + n);
    const [command, key, ...data] = atoms;
    if (command === "store") coll.set(key, data);
    else if (command === "remove") coll.delete(key);
    else if (command === "clear" && key === undefined) coll.clear();
    else throw new Error("coll cannot do " + atoms.join(" "));
  },
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(script, "utf8"), context, {filename: script});
for (const [kind, ...args] of JSON.parse(fs.readFileSync(scenarioPath, "utf8"))) {
  if (kind === "fire") {  // the 16th metro: the step's events leave on the grid
    fired = args[0];
    const events = coll.get(fired) || [];
    for (let k = 0; k < events.length; k += 2) played.push([fired, events[k], events[k + 1]]);
    queue.push(fired);
  } else if (kind === "hear") {  // the deferred "tick step" reaches the script
    context.tick(queue.shift());
  } else {
    context[kind](...args);
  }
}
console.log(JSON.stringify({played, coll: [...coll.keys()], unheard: queue}));
"""


@dataclass
class Phrase:
    id: int
    start_beat: float
    bars: int
    notes: list[tuple[int, int, float, float]]  # (pitch, velocity, start beat, duration beats), as gen/note sends


@dataclass
class Note:
    pitch: int
    on: int
    off: int | None = None  # None: still sounding


@dataclass
class Played:
    notes: list[Note]
    double_ons: list[tuple[int, int]]  # (step, pitch): a note-on while that pitch was sounding
    coll_steps: list[int]
    unheard: list[int]
    events: list[tuple[int, int, int]]  # (step, pitch, velocity) as played

    def sounding(self) -> list[Note]:
        return [n for n in self.notes if n.off is None]


@dataclass
class Session:
    """A scenario: the tick path's 16ths, the script hearing them, and phrases arriving in between."""

    actions: list[list] = field(default_factory=list)

    def ticks(self, first: int, last: int) -> Session:
        for step in range(first, last + 1):
            self.actions += [["fire", step], ["hear"]]
        return self

    def fire(self, step: int) -> Session:
        self.actions.append(["fire", step])
        return self

    def hear(self) -> Session:
        self.actions.append(["hear"])
        return self

    def phrase(self, phrase: Phrase) -> Session:
        self.actions.append(["begin", phrase.id, phrase.bars, phrase.start_beat])
        self.actions += [["note", phrase.id, *note] for note in phrase.notes]
        self.actions.append(["end", phrase.id, len(phrase.notes)])
        return self

    def send(self, *message) -> Session:
        self.actions.append(list(message))
        return self

    def run(self, tmp_path: Path) -> Played:
        harness, scenario = tmp_path / "harness.js", tmp_path / "scenario.json"
        harness.write_text(HARNESS)
        scenario.write_text(json.dumps(self.actions))
        result = subprocess.run(["node", str(harness), str(PLAYER), str(scenario)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        log = json.loads(result.stdout)
        return synth(log["played"], log["coll"], log["unheard"])


def synth(events, coll_steps, unheard) -> Played:
    """Notes as a synth hears the events: a note-on starts its pitch, a note-off ends it (if sounding)."""
    notes, sounding, double_ons = [], {}, []
    for step, pitch, velocity in events:
        if velocity > 0:
            if pitch in sounding:
                double_ons.append((step, pitch))
            sounding[pitch] = Note(pitch, step)
            notes.append(sounding[pitch])
        elif pitch in sounding:
            sounding.pop(pitch).off = step
    return Played(notes, double_ons, coll_steps, unheard, [tuple(e) for e in events])


def melody(pitches: list[int], beats: float = 1.0, first: float = 0.0) -> list[tuple[int, int, float, float]]:
    """One note per `beats`, each held until the next (the melody codecs' answers look like this)."""
    return [(p, 100, first + k * beats, beats) for k, p in enumerate(pitches)]


A_PITCHES = [60, 62, 64, 65, 67, 69, 71, 72]  # phrase A: two bars of quarter notes
B_PITCHES = [84, 86, 88, 89, 91, 93, 95, 96]  # phrase B: the next answer, other pitches


def answer(id_: int, start_beat: float, pitches: list[int], bars: int = 2) -> Phrase:
    return Phrase(id_, start_beat, bars, melody(pitches))


def steps_of(notes: list[Note], pitches: list[int]) -> list[tuple[int, int, int | None]]:
    return [(n.pitch, n.on, n.off) for n in notes if n.pitch in pitches]


def overlaps(notes: list[Note], groups: list[list[int]]) -> list[tuple[Note, Note]]:
    """Pairs of notes of different phrases sounding on a common step."""
    group = {p: k for k, pitches in enumerate(groups) for p in pitches}
    found = []
    for a in notes:
        for b in notes:
            if group[a.pitch] < group[b.pitch] and a.on < (b.off or 10**9) and b.on < (a.off or 10**9):
                found.append((a, b))
    return found


def assert_clean(played: Played) -> None:
    """After the session's final flush: no note left sounding, no double note-on, nothing left in the coll."""
    assert played.sounding() == []
    assert played.double_ons == []
    assert played.coll_steps == []


# ---------------------------------------------------------------------------------------------- the rules
def test_the_newest_answer_replaces_the_rest_of_the_older_one(tmp_path):
    """continue mode: A (bars 1-2) comes before bar 1, B (bars 2-3) before bar 2; over bar 2 only B sounds, and A's
    note held across the bar line ends there."""
    held = [(A_PITCHES[3], 100, 3.0, 2.0)]  # beats 3-5 of A: over the bar line where B begins
    a = Phrase(1, 4.0, 2, melody(A_PITCHES[:3]) + held + melody(A_PITCHES[4:7], first=5.0))
    b = answer(2, 8.0, B_PITCHES)
    played = (Session().ticks(0, 14).phrase(a).ticks(15, 30).phrase(b).ticks(31, 70).send("flush")
              .run(tmp_path))
    assert steps_of(played.notes, A_PITCHES) == [(60, 16, 20), (62, 20, 24), (64, 24, 28), (65, 28, 32)]
    assert steps_of(played.notes, B_PITCHES) == [(p, 32 + 4 * k, 36 + 4 * k) for k, p in enumerate(B_PITCHES)]
    assert overlaps(played.notes, [A_PITCHES, B_PITCHES]) == []
    assert_clean(played)


def test_an_answer_that_comes_late_plays_from_the_next_step(tmp_path):
    """B should start at step 32 but arrives after step 33 played: its first notes are skipped, A ends at once."""
    a = Phrase(1, 4.0, 2, [(60, 100, 0.0, 8.0)])  # one note over both bars
    b = answer(2, 8.0, B_PITCHES)
    played = Session().ticks(0, 14).phrase(a).ticks(15, 33).phrase(b).ticks(34, 70).send("flush").run(tmp_path)
    assert steps_of(played.notes, [60]) == [(60, 16, 34)]
    assert steps_of(played.notes, B_PITCHES) == [(p, 32 + 4 * k, 36 + 4 * k) for k, p in enumerate(B_PITCHES)][1:]
    assert overlaps(played.notes, [[60], B_PITCHES]) == []
    assert_clean(played)


def test_a_variation_of_a_finished_answer_plays_from_the_next_bar_line(tmp_path):
    """/musicbridge/variation answers with the last generation's start: A's window (steps 16-47) is over at step 50,
    so the variation plays from bar 4 (step 64), and nothing of it lingers at steps that have passed."""
    a = answer(1, 4.0, A_PITCHES)
    variation = answer(2, 4.0, B_PITCHES)
    played = (Session().ticks(0, 14).phrase(a).ticks(15, 50).phrase(variation).ticks(51, 100).send("flush")
              .run(tmp_path))
    assert steps_of(played.notes, B_PITCHES) == [(p, 64 + 4 * k, 68 + 4 * k) for k, p in enumerate(B_PITCHES)]
    assert overlaps(played.notes, [A_PITCHES, B_PITCHES]) == []
    assert_clean(played)


def test_a_variation_of_the_answer_playing_replaces_the_rest_of_it(tmp_path):
    """A variation fetched while its generation plays (steps 16-47) takes over from the next step."""
    a = answer(1, 4.0, A_PITCHES)
    variation = answer(2, 4.0, B_PITCHES)
    played = (Session().ticks(0, 14).phrase(a).ticks(15, 26).phrase(variation).ticks(27, 60).send("flush")
              .run(tmp_path))
    # the variation owns its window from the next step (27) on: A's note ends there, the variation's next note
    # (step 28) plays; its note at step 24 had passed
    assert steps_of(played.notes, A_PITCHES) == [(60, 16, 20), (62, 20, 24), (64, 24, 27)]
    assert steps_of(played.notes, B_PITCHES) == [(p, 16 + 4 * k, 20 + 4 * k) for k, p in enumerate(B_PITCHES)][3:]
    assert_clean(played)


def test_stop_ends_what_sounds_and_forgets_what_was_pending(tmp_path):
    a = Phrase(1, 4.0, 2, [(60, 100, 0.0, 6.0), (62, 100, 6.0, 2.0)])
    played = Session().ticks(0, 14).phrase(a).ticks(15, 20).send("flush").ticks(0, 40).send("flush").run(tmp_path)
    assert steps_of(played.notes, [60, 62]) == [(60, 16, 20)]  # ended by the stop; 62 never plays after Play
    assert_clean(played)


def test_panic_ends_every_pitch(tmp_path):
    a = answer(1, 4.0, A_PITCHES)
    played = Session().ticks(0, 14).phrase(a).ticks(15, 18).send("panic").run(tmp_path)
    assert steps_of(played.notes, A_PITCHES) == [(60, 16, 18)]
    assert played.sounding() == [] and played.coll_steps == []
    assert {p for step, p, v in played.events if step == 18 and v == 0} == set(range(128))


def test_a_jump_of_the_song_position_starts_over(tmp_path):
    """Live relocates (a loop, a click in the arrangement): the daemon drops what was pending, and so does the
    device; the note sounding ends at once and nothing of the old timeline plays at the new position."""
    a = answer(1, 4.0, A_PITCHES)
    played = Session().ticks(0, 14).phrase(a).ticks(15, 22).ticks(8, 40).send("flush").run(tmp_path)
    assert steps_of(played.notes, A_PITCHES) == [(60, 16, 20), (62, 20, 8)]  # 62 ends at the jump (step 8)
    assert_clean(played)


def test_phrases_are_not_placed_while_stopped_and_a_partial_phrase_is_dropped(tmp_path):
    a = answer(1, 4.0, A_PITCHES)
    partial = answer(2, 8.0, B_PITCHES)
    session = Session().phrase(a).ticks(0, 40)  # came while stopped
    session.send("begin", 2, 2, 8.0).send("note", 2, *partial.notes[0]).ticks(41, 60)  # its end never came
    played = session.send("flush").run(tmp_path)
    assert played.notes == []
    assert_clean(played)


# ---------------------------------------------------------------------------------------------- lagging behind
def test_an_answer_edited_while_the_tick_path_reads_its_first_step_leaves_nothing_hanging(tmp_path):
    """The script hears of step 31, then B arrives; meanwhile the tick path has already played step 32 from the
    old coll (A's note-on at 32). Whichever version of step 32 sounded, A's note is ended within two steps and B
    plays on from its next note; no pitch gets two note-ons, nothing hangs."""
    a = answer(1, 4.0, A_PITCHES)
    b = answer(2, 8.0, B_PITCHES)
    played = (Session().ticks(0, 14).phrase(a).ticks(15, 31).fire(32).phrase(b).hear().ticks(33, 70)
              .send("flush").run(tmp_path))
    a_notes = steps_of(played.notes, A_PITCHES)
    assert a_notes[:4] == [(60, 16, 20), (62, 20, 24), (64, 24, 28), (65, 28, 32)]
    assert a_notes[4:] == [(67, 32, 33)]  # the old step 32 sounded: ended at the next step the script controls
    assert steps_of(played.notes, B_PITCHES) == [(p, 32 + 4 * k, 36 + 4 * k) for k, p in enumerate(B_PITCHES)][1:]
    # and then the script knows A is silent: no more note-offs for it (a pitch it is unsure of gets one each step)
    assert [e for e in played.events if e[1] in A_PITCHES and e[0] > 34] == []
    assert_clean(played)


def test_a_script_a_tick_behind_still_plays_each_answer_alone(tmp_path):
    """The script hears of every tick only after the next one fired; answers replace each other every bar."""
    session = Session().fire(0)
    for step in range(1, 200):
        if step % 16 == 13:  # each answer arrives in the last quarter of a bar, for the next bar, two bars long
            bar = step // 16 + 1
            session.phrase(answer(bar, bar * 4.0, [40 + (bar % 6) * 12 + k for k in range(8)]))
        session.fire(step).hear()
    played = session.hear().send("flush").run(tmp_path)
    assert played.unheard == []
    groups = [[40 + g * 12 + k for k in range(8)] for g in range(6)]
    assert overlaps(played.notes, groups) == []
    # each bar plays the first bar of its own answer, whole: the answer for bar b has pitches 40 + (b % 6) * 12 + k
    expected = [(40 + (bar % 6) * 12 + k, bar * 16 + 4 * k) for bar in range(1, 13) for k in range(4)][:-2]
    assert [(n.pitch, n.on) for n in played.notes] == expected
    assert_clean(played)


# ---------------------------------------------------------------------------------------------- random sessions
def owner_reference(arrivals: list[tuple[int, Phrase]], last_step: int) -> list[tuple[int, int, int]]:
    """(pitch, on, off) of the notes that should sound, written as ownership rather than edits: phrase i owns the
    steps from max(its start, the step after its arrival) on, up to the next phrase's; a note plays when its phrase
    owns its step and had arrived before that step; it ends at its own end, where its phrase stops owning the
    steps, at the next note-on of its pitch, or at the final flush. `arrivals`: (last step played, phrase)."""
    owned = []  # (from step, phrase index, phrase start step)
    for index, (now, phrase) in enumerate(arrivals):
        start = round(phrase.start_beat * STEPS_PER_BEAT)
        if start + phrase.bars * STEPS_PER_BAR <= now + 1:
            start = (now // STEPS_PER_BAR + 1) * STEPS_PER_BAR
        owned.append((max(start, now + 1), index, start))

    def owner(step: int) -> int | None:
        candidates = [index for first, index, _ in owned if first <= step]
        return max(candidates) if candidates else None

    ons = []
    for first, index, start in owned:
        for pitch, _, beat, duration in arrivals[index][1].notes:
            on = start + round(beat * STEPS_PER_BEAT)
            off = max(start + round((beat + duration) * STEPS_PER_BEAT), on + 1)
            if first <= on <= last_step and owner(on) == index:
                ons.append((on, pitch, off, index))
    ons.sort()
    notes = []
    for k, (on, pitch, off, index) in enumerate(ons):
        end = min([off, last_step] + [s for s in range(on + 1, off) if owner(s) != index]
                  + [later for later, p, _, _ in ons[k + 1:] if p == pitch and later > on])
        notes.append((pitch, on, end))
    return sorted(notes)


def random_session(rng: random.Random, lag: float) -> tuple[Session, list[tuple[int, Phrase]], int]:
    """Ticks 0..last; phrases (each with its own pitches) arrive at random steps with random starts, lengths and
    note lengths, some in the past (late answers, variations); with probability `lag` the script has not heard
    of the tick just fired when the next phrase comes (it is never further behind: see the script's header)."""
    session, arrivals, last = Session(), [], 160
    unheard = 0
    pitch_base = 24
    for step in range(last + 1):
        session.fire(step)
        unheard += 1
        if unheard > 1 or rng.random() >= lag:
            for _ in range(unheard - (1 if rng.random() < lag else 0)):
                session.hear()
                unheard -= 1
        if step > 2 and rng.random() < 0.12:
            bars = rng.choice([1, 2, 4])
            start_bar = step // STEPS_PER_BAR + rng.choice([-3, -1, 0, 1, 1, 1, 2])
            notes, beat = [], 0.0
            while beat < bars * 4:
                length = rng.choice([0.25, 0.5, 1.0, 1.5, 3.0])
                if rng.random() < 0.8:
                    notes.append((pitch_base + rng.randrange(6), rng.randrange(1, 128), beat, length))
                beat += rng.choice([0.25, 0.5, 1.0, length])
            phrase = Phrase(len(arrivals) + 1, max(start_bar, 0) * 4.0, bars, notes)
            arrivals.append((step - unheard, phrase))
            session.phrase(phrase)
            pitch_base = 24 + (pitch_base - 24 + 6) % 96
    for _ in range(unheard):
        session.hear()
    session.send("flush")
    return session, arrivals, last


@pytest.mark.parametrize("seed", range(6))
def test_random_sessions_play_what_owns_each_step(seed, tmp_path):
    session, arrivals, last = random_session(random.Random(seed), lag=0.0)
    played = session.run(tmp_path)
    assert_clean(played)
    assert sorted((n.pitch, n.on, n.off) for n in played.notes) == owner_reference(arrivals, last)


@pytest.mark.parametrize("seed", range(6))
def test_random_sessions_with_a_lagging_script_never_hang_nor_double(seed, tmp_path):
    """The script hears ticks late at random: phrases are placed against a stale step. Nothing hangs, no pitch
    gets two note-ons, and two phrases sound together for at most the two steps a race costs."""
    session, arrivals, last = random_session(random.Random(100 + seed), lag=0.3)
    played = session.run(tmp_path)
    assert_clean(played)
    assert len(played.notes) > 20
    groups = [list(range(24 + g, 24 + g + 6)) for g in range(0, 96, 6)]
    for a, b in overlaps(played.notes, groups):
        assert min(a.off, b.off) - max(a.on, b.on) <= 2, (a, b)
