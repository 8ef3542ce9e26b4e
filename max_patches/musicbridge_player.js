// musicbridge_player.js - plays the daemon's answers on the 16th grid of Live's transport: the newest answer only,
// from its start step. What remains of an older answer is removed there, and its notes still sounding end there.
//
// The patch sends it:
//   begin id n_bars start_beat          a /musicbridge/gen/* phrase (docs/osc.md); it is placed whole at its end
//   note id pitch velocity start_beat duration_beats
//   end id n_notes
//   tick step     the 16th step (song position in 16ths) the tick path has just played; every 16th while Live plays
//   flush         transport stop: every note that may sound is ended, nothing stays pending
//   panic         Panic: flush, and a note-off for every pitch
// Outlet 0 edits the [coll] the tick path reads: "store step p v p v ...", "remove step", "clear".
// Outlet 1 plays "pitch velocity" at once (the note-offs of flush, panic and a relocation).
//
// Why a [coll]: js runs in Max's low-priority thread, so notes sent from here would leave late and unevenly. The
// 16th metro reads the coll in the scheduler thread and plays the step's events on the grid; this script only
// decides what each step holds. It hears of each tick a little after it happened, so the step after the last tick
// it heard (the frontier) may already have been played when it changes it: `maybe` keeps every pitch that could
// be sounding, whichever version of the frontier was played, and the ones no answer wants are ended on the next
// two steps, so a note never hangs. This assumes Max's low-priority queue runs within a 16th.
//
// The rules (bridge/scheduler.py plays the daemon's own MIDI output by the same ones):
// - an answer owns the steps from its start on: older notes starting there are removed, older notes sounding there
//   end there; its own notes whose step has passed when it arrives are skipped;
// - a phrase entirely in the past when it arrives (a /musicbridge/variation of an earlier answer) plays from the
//   next bar line;
// - every note-on comes after a note-off of its pitch in the same step, so a pitch never gets two note-ons;
// - a tick that is not the next step (Play, a jump of the song position) starts over: every note ends, nothing
//   stays pending (the daemon flushes on start and relocation too).

autowatch = 1;
inlets = 1;
outlets = 2;

var STEPS_PER_BEAT = 4; // the grid is 16ths
var STEPS_PER_BAR = 16; // bars of 4 beats, as the daemon counts them
var PITCHES = 128;

var playing = false; // a tick came since the last flush
var now = -1; // the last step the tick path played, as far as this script has heard
var incoming = null; // the phrase being received: {id, bars, start (beats), notes: [[pitch, velocity, start, duration]]}
var notes = []; // what should play: {pitch, velocity, on, off} in steps, the newest answer's cut already applied
var written = {}; // step -> events [p, v, p, v, ...] as stored in the coll (steps after `now` only)
var unsure = {}; // frontier step -> the earlier versions of it, replaced while the tick path may have been reading
var maybe = {}; // pitch -> true: may be sounding after step `now`

// ---- messages from the patch -----------------------------------------------------------------------------------
function begin(id, bars, startBeat) {
	incoming = {id: id, bars: bars, start: startBeat, notes: []}; // a phrase left without its end is dropped
}

function note(id, pitch, velocity, startBeat, durationBeats) {
	if (incoming && incoming.id === id) {
		incoming.notes.push([pitch, velocity, startBeat, durationBeats]);
	}
}

function end(id) {
	if (!incoming || incoming.id !== id) {
		return;
	}
	var phrase = incoming;
	incoming = null;
	if (playing) { // stopped: nothing to place it on (the daemon starts over at Play, and so does this script)
		place(phrase);
	}
}

function tick(step) {
	step = Math.round(step);
	if (!playing || step !== now + 1) {
		restart(step);
		return;
	}
	heard(step);
	now = step;
	notes = notes.filter(function (n) { return n.off > now; });
	rewrite();
}

function flush() {
	silence();
	playing = false;
}

function panic() {
	flush();
	for (var pitch = 0; pitch < PITCHES; pitch++) {
		outlet(1, pitch, 0);
	}
}

// ---- placing an answer -----------------------------------------------------------------------------------------
// The steps of `phrase` from its start (or from the frontier, for steps already played) are its own.
function place(phrase) {
	var frontier = now + 1;
	var start = Math.round(phrase.start * STEPS_PER_BEAT);
	if (start + phrase.bars * STEPS_PER_BAR <= frontier) { // over before it came: an earlier answer fetched again
		start = (Math.floor(now / STEPS_PER_BAR) + 1) * STEPS_PER_BAR;
	}
	var kept = [];
	for (var k = 0; k < notes.length; k++) {
		var old = notes[k];
		if (old.on >= start) {
			continue; // the new phrase owns that step
		}
		old.off = Math.min(old.off, start); // sounding into the new phrase: it ends where the new one begins
		kept.push(old);
	}
	for (k = 0; k < phrase.notes.length; k++) {
		var n = phrase.notes[k];
		var on = start + Math.round(n[2] * STEPS_PER_BEAT);
		var off = start + Math.round((n[2] + n[3]) * STEPS_PER_BEAT);
		if (on >= frontier && n[1] > 0) { // a step already played is skipped, as the daemon drops late notes
			kept.push({pitch: clamp(n[0], 0, PITCHES - 1), velocity: clamp(n[1], 1, 127), on: on,
				off: Math.max(off, on + 1)});
		}
	}
	notes = kept;
	rewrite();
}

function clamp(value, low, high) {
	return Math.max(low, Math.min(high, Math.round(value)));
}

// ---- from the notes to the coll --------------------------------------------------------------------------------
// Store what each step from the frontier on should hold, where it differs from what the coll has.
function rewrite() {
	var wanted = plan();
	var step;
	for (step in written) {
		if (!wanted.hasOwnProperty(step)) {
			store(Number(step), null);
		}
	}
	for (step in wanted) {
		if (!same(written[step], wanted[step])) {
			store(Number(step), wanted[step]);
		}
	}
}

// step -> events for every step from the frontier on: note-offs first (every note-on's pitch among them), then
// note-ons, each in pitch order.
function plan() {
	var frontier = now + 1;
	var ends = endings();
	var steps = {};
	var soundingNow = {};
	var soundingNext = {};
	function at(step) {
		return steps[step] || (steps[step] = {offs: {}, ons: {}});
	}
	for (var k = 0; k < notes.length; k++) {
		var n = notes[k];
		if (n.on <= now && ends[k] > now) {
			soundingNow[n.pitch] = true;
		}
		if (n.on <= frontier && ends[k] > frontier) {
			soundingNext[n.pitch] = true;
		}
		if (n.on >= frontier) {
			at(n.on).offs[n.pitch] = true;
			at(n.on).ons[n.pitch] = n.velocity;
		}
		if (ends[k] >= frontier && ends[k] > n.on) {
			at(ends[k]).offs[n.pitch] = true;
		}
	}
	for (var pitch in maybe) {
		if (soundingNow[pitch]) {
			continue;
		}
		at(frontier).offs[pitch] = true; // may be sounding and no answer wants it: ended at the frontier,
		if (!soundingNext[pitch]) {
			at(frontier + 1).offs[pitch] = true; // and on the step after, which the tick path cannot have read yet
		}
	}
	var wanted = {};
	for (var step in steps) {
		var events = [];
		var offs = pitchesOf(steps[step].offs);
		var ons = pitchesOf(steps[step].ons);
		for (k = 0; k < offs.length; k++) {
			events.push(offs[k], 0);
		}
		for (k = 0; k < ons.length; k++) {
			events.push(ons[k], steps[step].ons[ons[k]]);
		}
		wanted[step] = events;
	}
	return wanted;
}

// The step where each note really ends: its own end, or the next note-on of its pitch if that comes first.
function endings() {
	var order = [];
	for (var k = 0; k < notes.length; k++) {
		order.push(k);
	}
	order.sort(function (a, b) { return notes[a].pitch - notes[b].pitch || notes[a].on - notes[b].on || a - b; });
	var ends = [];
	for (k = 0; k < order.length; k++) {
		var n = notes[order[k]];
		var next = k + 1 < order.length ? notes[order[k + 1]] : null;
		ends[order[k]] = next && next.pitch === n.pitch ? Math.min(n.off, next.on) : n.off;
	}
	return ends;
}

function pitchesOf(set) {
	var pitches = [];
	for (var pitch in set) {
		pitches.push(Number(pitch));
	}
	return pitches.sort(function (a, b) { return a - b; });
}

function same(a, b) {
	if (!a || !b || a.length !== b.length) {
		return false;
	}
	for (var k = 0; k < a.length; k++) {
		if (a[k] !== b[k]) {
			return false;
		}
	}
	return true;
}

function store(step, events) {
	if (step === now + 1) { // the tick path may be reading it right now: either version may sound
		(unsure[step] || (unsure[step] = [])).push(written[step] || []);
	}
	if (events) {
		written[step] = events;
		outlet(0, ["store", step].concat(events));
	} else {
		delete written[step];
		outlet(0, "remove", step);
	}
}

// ---- what the tick path played ---------------------------------------------------------------------------------
// The tick path played `step`: whichever version of it that was, the pitches it may have left sounding.
function heard(step) {
	var versions = (unsure[step] || []).concat([written[step] || []]);
	var after = {};
	for (var v = 0; v < versions.length; v++) {
		var sounding = {};
		var pitch;
		for (pitch in maybe) {
			sounding[pitch] = true;
		}
		var events = versions[v];
		for (var k = 0; k < events.length; k += 2) {
			if (events[k + 1] > 0) {
				sounding[events[k]] = true;
			} else {
				delete sounding[events[k]];
			}
		}
		for (pitch in sounding) {
			after[pitch] = true;
		}
	}
	maybe = after;
	delete unsure[step];
	if (written.hasOwnProperty(step)) {
		delete written[step];
		outlet(0, "remove", step);
	}
}

// Play or a jump: what the tick path just played there is ended with everything else, and time starts at `step`.
function restart(step) {
	heard(step);
	silence();
	playing = true;
	now = step;
}

function silence() {
	for (var pitch in maybe) {
		outlet(1, Number(pitch), 0);
	}
	outlet(0, "clear");
	incoming = null;
	notes = [];
	written = {};
	unsure = {};
	maybe = {};
}
