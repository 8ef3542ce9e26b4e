// musicbridge_scale.js - "Live scale" of the musicbridge device: Live's song scale becomes the daemon's scale lock.
//
// The patch sends it:
//   1 / 0        the Live scale toggle: on = lock answers to the song's scale and follow it, off = unlock
//   ready        live.thisdevice: the Live API can be used from now on
//   push         the daemon (re)connected: send the lock again (nothing while off: a --scale given to
//                `musicbridge serve` stays until the toggle is used)
// Outlet 0 feeds [prepend /musicbridge/param/scale]: the song scale's pitch classes, root first
//          ("2,4,5,7,9,11,0" for D Dorian: musicbridge.scales names a set by its first member), or "off".
// Outlet 1 says what is locked (shown in the device).
//
// Live 12's Song has root_note (0-11, C = 0), scale_intervals (semitones above the root) and scale_name; root_note
// and scale_intervals are observed, so a scale changed in Live changes the lock at once. Live 11 and earlier have
// no scale_intervals: the device says so and sends nothing.

autowatch = 1;
inlets = 1;
outlets = 2;

var NOTE_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
var PITCH_CLASSES = 12;

var following = false; // the toggle
var apiReady = false; // live.thisdevice has banged
var observers = []; // LiveAPI objects observing the song's scale (kept alive while following)
var lastSent = null;

function say(text) {
	outlet(1, text);
}

function send(spec) {
	lastSent = spec;
	outlet(0, spec);
}

// The song's scale as {spec, name}, or null (with the reason shown) when Live has none to give.
function songScale() {
	var song = new LiveAPI("live_set");
	if (!song || parseInt(song.id, 10) === 0) {
		say("no Live set");
		return null;
	}
	var root = parseInt(song.get("root_note"), 10);
	var intervals = song.get("scale_intervals");
	if (isNaN(root) || !intervals || intervals.length === 0) {
		say("Live 12 needed for its scale");
		return null;
	}
	var seen = {};
	var pitchClasses = [];
	for (var k = 0; k < intervals.length; k++) {
		var pc = (((root + parseInt(intervals[k], 10)) % PITCH_CLASSES) + PITCH_CLASSES) % PITCH_CLASSES;
		if (!isNaN(pc) && !seen[pc]) {
			seen[pc] = true;
			pitchClasses.push(pc); // root first: intervals start at 0
		}
	}
	var name = song.get("scale_name");
	name = name && name.length ? name.join(" ") : pitchClasses.length + " notes";
	return { spec: pitchClasses.join(","), name: NOTE_NAMES[root % PITCH_CLASSES] + " " + name };
}

// Sends the song's scale when it differs from what was sent last (observers also call back when they start), or
// always when `force` (the daemon reconnected and has forgotten it).
function update(force) {
	if (!following || !apiReady) {
		return;
	}
	var scale = songScale();
	if (scale !== null && (force || scale.spec !== lastSent)) {
		send(scale.spec);
		say("scale: " + scale.name);
	}
}

function changed(args) {
	update(false); // root_note or scale_intervals changed in Live
}

function observe() {
	var properties = ["root_note", "scale_intervals"];
	for (var k = 0; k < properties.length; k++) {
		var api = new LiveAPI(changed, "live_set");
		api.property = properties[k];
		observers.push(api);
	}
}

function unobserve() {
	for (var k = 0; k < observers.length; k++) {
		observers[k].property = "";
	}
	observers = [];
}

function msg_int(on) {
	var wanted = on !== 0;
	if (wanted === following) {
		return; // the toggle's value restored at load, or repeated
	}
	following = wanted;
	if (following) {
		if (apiReady) {
			observe();
		}
		update(false);
	} else {
		unobserve();
		send("off");
		say("scale: off");
	}
}

function ready() {
	apiReady = true;
	if (following && observers.length === 0) {
		observe();
	}
	update(false);
}

function push() {
	update(true);
}
