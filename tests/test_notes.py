import mido
import pytest
from midi_factory import (
    write_not_midi,
    write_overlapping,
    write_truncated,
    write_type0,
    write_type1_multitrack,
)

from musicbridge.notes import MidiFileError, Note, NoteSequence, TempoChange


def test_type0_beats_come_from_ticks_at_any_ppq(tmp_path):
    sequence = NoteSequence.from_midi(write_type0(tmp_path / "a.mid", ppq=96))
    assert len(sequence.notes) == 16
    assert [n.start for n in sequence.notes[:3]] == [0.0, 1.0, 2.0]
    assert sequence.notes[0].end == 1.0
    assert sequence.tempos[0].bpm == pytest.approx(100)


def test_type1_tracks_tempo_changes_and_drums(tmp_path):
    sequence = NoteSequence.from_midi(write_type1_multitrack(tmp_path / "b.mid"))
    groups = sequence.instruments()
    drums = [notes for (_, _, _, is_drum), notes in groups.items() if is_drum]
    assert len(drums) == 1 and {n.pitch for n in drums[0]} == {36, 38, 42}
    flute = [notes for (_, channel, program, _), notes in groups.items() if program == 73]
    assert len(flute[0]) == 16
    assert [t.bpm for t in sequence.tempos] == pytest.approx([120, 90])
    # 8 beats at 120 bpm = 4 s, then 2 beats at 90 bpm = 1.333 s
    assert sequence.seconds_at(10) == pytest.approx(4 + 4 / 3)


def test_overlapping_notes_of_one_pitch_end_first_in_first_out(tmp_path):
    sequence = NoteSequence.from_midi(write_overlapping(tmp_path / "c.mid"))
    c4 = [n for n in sequence.notes if n.pitch == 60]
    assert [(n.start, n.end, n.velocity) for n in c4] == [(0.0, 2.0, 80), (1.0, 3.0, 90)]


@pytest.mark.parametrize("writer", [write_truncated, write_not_midi])
def test_unreadable_files_raise_a_clear_error(tmp_path, writer):
    with pytest.raises(MidiFileError, match="not a readable MIDI file"):
        NoteSequence.from_midi(writer(tmp_path / "bad.mid"))


def test_round_trip_through_a_standard_midi_file(tmp_path):
    original = NoteSequence.from_midi(write_type1_multitrack(tmp_path / "b.mid"))
    path = original.save(tmp_path / "out.mid")
    midi = mido.MidiFile(path)
    assert midi.type == 1
    again = NoteSequence.from_midi(path)
    assert [(n.pitch, n.start, n.end, n.is_drum, n.program) for n in again.notes] == [
        (n.pitch, n.start, n.end, n.is_drum, n.program) for n in original.notes
    ]
    assert [t.bpm for t in again.tempos] == pytest.approx([t.bpm for t in original.tempos])


def test_repeated_notes_re_attack_after_writing(tmp_path):
    sequence = NoteSequence([Note(60, 100, 0, 1), Note(60, 100, 1, 2)])
    again = NoteSequence.from_midi(sequence.save(tmp_path / "r.mid"))
    assert [(n.start, n.end) for n in again.notes] == [(0.0, 1.0), (1.0, 2.0)]


def test_quantize_slice_bars_transpose():
    sequence = NoteSequence(
        [Note(60, 90, 0.02, 0.9), Note(64, 90, 1.1, 1.12), Note(36, 90, 4.26, 4.5, 9, 0, True)],
        tempos=[TempoChange(0, 120), TempoChange(4, 60)],
    )
    quantized = sequence.quantize()
    assert [(n.start, n.end) for n in quantized.notes] == [(0.0, 1.0), (1.0, 1.25), (4.25, 4.5)]
    bars = quantized.bars()
    assert len(bars) == 2 and len(bars[1].notes) == 1 and bars[1].notes[0].start == 0.25
    assert bars[1].tempos[0].bpm == 60
    up = quantized.transpose(5)
    assert [n.pitch for n in up.notes] == [65, 69, 36]  # drums stay
    part = quantized.slice(0.5, 1.125)
    assert [(n.start, n.end) for n in part.notes] == [(0.0, 0.5), (0.5, 0.625)]
