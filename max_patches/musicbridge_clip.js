// musicbridge_clip.js - "Write clip" of the musicbridge device: the last answer of the daemon becomes a clip.
//
// The patch sends it the daemon's replies and the button press:
//   begin <id> <n_bars> <start_beat>     /musicbridge/gen/begin
//   note <id> <pitch> <velocity> <start_beat> <duration_beats>     /musicbridge/gen/note (beats from the phrase start)
//   end <id> <n_notes>                   /musicbridge/gen/end
//   write                                creates a clip of the phrase's length in the next empty clip slot of
//                                        this device's track and adds the notes (Live 11+ API:
//                                        ClipSlot.create_clip, Clip.add_new_notes)
// Its outlet reports what happened (shown in the device).

autowatch = 1;
inlets = 1;
outlets = 1;

var BEATS_PER_BAR = 4;
var MIN_DURATION = 1 / 64; // Live refuses notes of zero length

var pending = null; // the answer being received: {id, bars, notes}
var last = null; // the last complete answer

function say(text) {
	outlet(0, text);
}

function begin(id, bars, startBeat) {
	pending = { id: id, bars: bars, notes: [] };
}

function note(id, pitch, velocity, startBeat, duration) {
	if (pending === null || pending.id !== id) {
		return; // a note of an answer whose begin we missed: ignore the partial answer
	}
	pending.notes.push({
		pitch: pitch,
		start_time: startBeat,
		duration: Math.max(duration, MIN_DURATION),
		velocity: velocity,
		mute: 0
	});
}

function end(id, count) {
	if (pending === null || pending.id !== id) {
		return;
	}
	if (pending.notes.length !== count) {
		say("answer " + id + ": " + pending.notes.length + " of " + count + " notes arrived, not kept");
		pending = null;
		return;
	}
	last = pending;
	pending = null;
	say("answer " + id + ": " + count + " notes, " + last.bars + " bars - ready to write");
}

// The first slot without a clip, searching from the one after the playing clip and wrapping around;
// a new scene is created when every slot is full.
function emptySlot(track) {
	var count = track.getcount("clip_slots");
	var playing = parseInt(track.get("playing_slot_index"), 10);
	var first = playing >= 0 ? playing + 1 : 0;
	for (var k = 0; k < count; k++) {
		var index = (first + k) % count;
		var slot = new LiveAPI(track.unquotedpath + " clip_slots " + index);
		if (parseInt(slot.get("has_clip"), 10) === 0) {
			return { slot: slot, index: index };
		}
	}
	new LiveAPI("live_set").call("create_scene", -1);
	return { slot: new LiveAPI(track.unquotedpath + " clip_slots " + count), index: count };
}

function write() {
	if (last === null) {
		say("no answer to write yet");
		return;
	}
	var track = new LiveAPI("this_device canonical_parent");
	if (!track || parseInt(track.id, 10) === 0 || track.get("has_midi_input") != 1) {
		say("write clip works on a MIDI track in Live");
		return;
	}
	var target = emptySlot(track);
	target.slot.call("create_clip", last.bars * BEATS_PER_BAR);
	var clip = new LiveAPI(target.slot.unquotedpath + " clip");
	clip.call("add_new_notes", { notes: last.notes });
	clip.set("name", "musicbridge " + last.id);
	say("wrote answer " + last.id + " (" + last.notes.length + " notes) to slot " + (target.index + 1));
}

function anything() {
	post("musicbridge_clip.js: unknown message " + messagename + "\n");
}
