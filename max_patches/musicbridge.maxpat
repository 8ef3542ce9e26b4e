{
	"patcher" : {
		"fileversion" : 1,
		"appversion" : {
			"major" : 8,
			"minor" : 5,
			"revision" : 0,
			"architecture" : "x64",
			"modernui" : 1
		},
		"classnamespace" : "box",
		"rect" : [ 40.0, 60.0, 1760.0, 1380.0 ],
		"bglocked" : 0,
		"openinpresentation" : 1,
		"default_fontsize" : 12.0,
		"default_fontface" : 0,
		"default_fontname" : "Arial",
		"gridonopen" : 1,
		"gridsize" : [ 15.0, 15.0 ],
		"gridsnaponopen" : 1,
		"objectsnaponopen" : 1,
		"statusbarvisible" : 2,
		"toolbarvisible" : 1,
		"lefttoolbarpinned" : 0,
		"toptoolbarpinned" : 0,
		"righttoolbarpinned" : 0,
		"bottomtoolbarpinned" : 0,
		"toolbars_unpinned_last_save" : 0,
		"tallnewobj" : 0,
		"boxanimatetime" : 200,
		"enablehscroll" : 1,
		"enablevscroll" : 1,
		"devicewidth" : 548.0,
		"description" : "musicbridge: play with a generative model over OSC",
		"digest" : "musicbridge device",
		"tags" : "musicbridge",
		"style" : "",
		"subpatcher_template" : "",
		"assistshowspatchername" : 0,
		"boxes" : [
			{
				"box" : {
					"fontface" : 1,
					"fontsize" : 16.0,
					"id" : "obj-1",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 15.0, 700.0, 24.0 ],
					"text" : "musicbridge - plays with `musicbridge serve` over OSC (daemon listens on 127.0.0.1:9000, answers on port 9001)"
				}
			},
			{
				"box" : {
					"id" : "obj-2",
					"linecount" : 2,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 42.0, 1100.0, 34.0 ],
					"text" : "Max for Live MIDI effect (build musicbridge.amxd with build_amxd.py) and plain Max patch. The track's notes and Live's transport go to the daemon;\nits answers (/musicbridge/gen/*) come back and are played on this track at their beat positions. Every OSC message leaves through [s ---mb-osc] -> [udpsend]."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-3",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 100.0, 280.0, 20.0 ],
					"text" : "1 . Notes in -> /musicbridge/note (and thru)"
				}
			},
			{
				"box" : {
					"id" : "obj-4",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "int" ],
					"patching_rect" : [ 30.0, 130.0, 50.0, 22.0 ],
					"text" : "midiin"
				}
			},
			{
				"box" : {
					"id" : "obj-5",
					"maxclass" : "live.toggle",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 180.0, 130.0, 20.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 372.0, 8.0, 15.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Thru",
							"parameter_shortname" : "Thru",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_initial" : [ 1 ],
							"parameter_initial_enable" : 1
						}
					},
					"varname" : "Thru"
				}
			},
			{
				"box" : {
					"id" : "obj-6",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 205.0, 130.0, 100.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 390.0, 6.0, 40.0, 18.0 ],
					"text" : "thru"
				}
			},
			{
				"box" : {
					"id" : "obj-7",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 180.0, 170.0, 40.0, 22.0 ],
					"text" : "gate"
				}
			},
			{
				"box" : {
					"id" : "obj-8",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 180.0, 205.0, 50.0, 22.0 ],
					"text" : "midiout"
				}
			},
			{
				"box" : {
					"id" : "obj-9",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 4,
					"outlettype" : [ "int", "int", "int", "int" ],
					"patching_rect" : [ 30.0, 170.0, 100.0, 22.0 ],
					"text" : "xnotein"
				}
			},
			{
				"box" : {
					"id" : "obj-10",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 265.0, 150.0, 22.0 ],
					"text" : "prepend /musicbridge/note"
				}
			},
			{
				"box" : {
					"id" : "obj-11",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 298.0, 80.0, 22.0 ],
					"text" : "s ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-12",
					"linecount" : 5,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 330.0, 300.0, 76.0 ],
					"text" : "xnotein reports each note-on and note-off (0x80 or a\nnote-on of velocity 0) with a flag: 1 on, 0 off. Velocity\ntimes the flag makes every release velocity 0, whatever\nrelease velocity Live sends. Thru passes what the track\nplays to the device's MIDI out."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-13",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 340.0, 100.0, 300.0, 20.0 ],
					"text" : "2 . Live's transport -> /musicbridge/transport/*"
				}
			},
			{
				"box" : {
					"id" : "obj-14",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "bang" ],
					"patching_rect" : [ 340.0, 130.0, 130.0, 22.0 ],
					"text" : "metro 100 @active 1"
				}
			},
			{
				"box" : {
					"id" : "obj-15",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 9,
					"outlettype" : [ "int", "int", "float", "float", "float", "", "int", "float", "" ],
					"patching_rect" : [ 340.0, 165.0, 140.0, 22.0 ],
					"text" : "transport"
				}
			},
			{
				"box" : {
					"id" : "obj-16",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "", "int", "int" ],
					"patching_rect" : [ 340.0, 205.0, 50.0, 22.0 ],
					"text" : "change"
				}
			},
			{
				"box" : {
					"id" : "obj-17",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 340.0, 245.0, 230.0, 22.0 ],
					"text" : "prepend /musicbridge/transport/tempo"
				}
			},
			{
				"box" : {
					"id" : "obj-19",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "", "int", "int" ],
					"patching_rect" : [ 590.0, 205.0, 50.0, 22.0 ],
					"text" : "change"
				}
			},
			{
				"box" : {
					"id" : "obj-20",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "" ],
					"patching_rect" : [ 590.0, 245.0, 50.0, 22.0 ],
					"text" : "sel 0"
				}
			},
			{
				"box" : {
					"id" : "obj-21",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "bang", "bang", "bang" ],
					"patching_rect" : [ 590.0, 285.0, 50.0, 22.0 ],
					"text" : "t b b b"
				}
			},
			{
				"box" : {
					"id" : "obj-22",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 540.0, 320.0, 180.0, 22.0 ],
					"text" : "/musicbridge/transport/stop"
				}
			},
			{
				"box" : {
					"id" : "obj-23",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 430.0, 580.0, 175.0, 22.0 ],
					"text" : "/musicbridge/transport/play"
				}
			},
			{
				"box" : {
					"id" : "obj-24",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 640.0, 355.0, 80.0, 22.0 ],
					"text" : "s ---mb-flush"
				}
			},
			{
				"box" : {
					"id" : "obj-25",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 490.0, 130.0, 90.0, 22.0 ],
					"text" : "r ---mb-resend"
				}
			},
			{
				"box" : {
					"id" : "obj-26",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 490.0, 165.0, 50.0, 22.0 ],
					"text" : "set -1"
				}
			},
			{
				"box" : {
					"id" : "obj-27",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "bang" ],
					"patching_rect" : [ 340.0, 400.0, 220.0, 22.0 ],
					"text" : "metro 16n @quantize 16n @active 1"
				}
			},
			{
				"box" : {
					"id" : "obj-28",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 9,
					"outlettype" : [ "int", "int", "float", "float", "float", "", "int", "float", "" ],
					"patching_rect" : [ 340.0, 435.0, 140.0, 22.0 ],
					"text" : "transport"
				}
			},
			{
				"box" : {
					"id" : "obj-29",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "float", "float" ],
					"patching_rect" : [ 340.0, 470.0, 40.0, 22.0 ],
					"text" : "t f f"
				}
			},
			{
				"box" : {
					"id" : "obj-30",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "float" ],
					"patching_rect" : [ 340.0, 505.0, 50.0, 22.0 ],
					"text" : "/ 480."
				}
			},
			{
				"box" : {
					"id" : "obj-31",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 340.0, 540.0, 250.0, 22.0 ],
					"text" : "prepend /musicbridge/transport/position"
				}
			},
			{
				"box" : {
					"id" : "obj-32",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 460.0, 470.0, 160.0, 22.0 ],
					"text" : "expr int($f1 / 120. + 0.5)"
				}
			},
			{
				"box" : {
					"id" : "obj-33",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 460.0, 505.0, 90.0, 22.0 ],
					"text" : "s ---mb-step"
				}
			},
			{
				"box" : {
					"id" : "obj-34",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 340.0, 580.0, 80.0, 22.0 ],
					"text" : "s ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-35",
					"linecount" : 6,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 340.0, 615.0, 330.0, 90.0 ],
					"text" : "A 100 ms poll reports tempo changes and Stop. The tempo-\nrelative metro fires on every 16th while Live plays: song\nposition in quarter notes (ticks / 480), then, on the first\n16th after Play, /musicbridge/transport/play: the daemon's\nclock starts at that very position. The 16th step goes to\nthe answer player (5)."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-36",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 740.0, 100.0, 330.0, 20.0 ],
					"text" : "3 . Controls -> /musicbridge/mode, param/*, capture ..."
				}
			},
			{
				"box" : {
					"id" : "obj-37",
					"maxclass" : "live.menu",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "", "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 740.0, 160.0, 110.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 8.0, 8.0, 100.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Mode",
							"parameter_shortname" : "Mode",
							"parameter_type" : 2,
							"parameter_mmax" : 7,
							"parameter_enum" : [ "continue", "call-response", "interpolate", "sample", "loop", "mutate", "similar", "off" ],
							"parameter_initial" : [ 0 ],
							"parameter_initial_enable" : 1
						}
					},
					"varname" : "Mode"
				}
			},
			{
				"box" : {
					"id" : "obj-38",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 870.0, 190.0, 150.0, 22.0 ],
					"text" : "prepend /musicbridge/mode"
				}
			},
			{
				"box" : {
					"id" : "obj-39",
					"maxclass" : "live.dial",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 740.0, 200.0, 44.0, 48.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 8.0, 30.0, 44.0, 48.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Temperature",
							"parameter_shortname" : "Temp",
							"parameter_type" : 0,
							"parameter_mmin" : 0.0,
							"parameter_mmax" : 2.0,
							"parameter_initial" : [ 1.0 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 1
						}
					},
					"varname" : "Temperature"
				}
			},
			{
				"box" : {
					"id" : "obj-40",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 870.0, 225.0, 230.0, 22.0 ],
					"text" : "prepend /musicbridge/param/temperature"
				}
			},
			{
				"box" : {
					"id" : "obj-41",
					"maxclass" : "live.dial",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 740.0, 255.0, 44.0, 48.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 60.0, 30.0, 44.0, 48.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Novelty",
							"parameter_shortname" : "Novelty",
							"parameter_type" : 0,
							"parameter_mmin" : 0.0,
							"parameter_mmax" : 4.0,
							"parameter_initial" : [ 1.0 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 1
						}
					},
					"varname" : "Novelty"
				}
			},
			{
				"box" : {
					"id" : "obj-42",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 870.0, 280.0, 210.0, 22.0 ],
					"text" : "prepend /musicbridge/param/novelty"
				}
			},
			{
				"box" : {
					"id" : "obj-43",
					"maxclass" : "live.numbox",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 740.0, 315.0, 40.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 116.0, 40.0, 40.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Bars",
							"parameter_shortname" : "Bars",
							"parameter_type" : 1,
							"parameter_mmin" : 1,
							"parameter_mmax" : 16,
							"parameter_initial" : [ 2 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 0
						}
					},
					"varname" : "Bars"
				}
			},
			{
				"box" : {
					"id" : "obj-44",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 785.0, 313.0, 40.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 158.0, 38.0, 40.0, 18.0 ],
					"text" : "bars"
				}
			},
			{
				"box" : {
					"id" : "obj-45",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 870.0, 315.0, 190.0, 22.0 ],
					"text" : "prepend /musicbridge/param/bars"
				}
			},
			{
				"box" : {
					"id" : "obj-46",
					"maxclass" : "live.numbox",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 740.0, 345.0, 40.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 116.0, 62.0, 40.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Variations",
							"parameter_shortname" : "Variations",
							"parameter_type" : 1,
							"parameter_mmin" : 1,
							"parameter_mmax" : 16,
							"parameter_initial" : [ 1 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 0
						}
					},
					"varname" : "Variations"
				}
			},
			{
				"box" : {
					"id" : "obj-47",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 785.0, 343.0, 70.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 158.0, 60.0, 60.0, 18.0 ],
					"text" : "variations"
				}
			},
			{
				"box" : {
					"id" : "obj-48",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 870.0, 345.0, 210.0, 22.0 ],
					"text" : "prepend /musicbridge/param/variations"
				}
			},
			{
				"box" : {
					"id" : "obj-49",
					"maxclass" : "live.text",
					"mode" : 0,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 740.0, 385.0, 60.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 8.0, 90.0, 58.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Capture A",
							"parameter_shortname" : "Capture A",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_invisible" : 1
						}
					},
					"text" : "Capture A",
					"texton" : "Capture A",
					"varname" : "Capture A"
				}
			},
			{
				"box" : {
					"id" : "obj-50",
					"maxclass" : "live.text",
					"mode" : 0,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 810.0, 385.0, 60.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 70.0, 90.0, 58.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Capture B",
							"parameter_shortname" : "Capture B",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_invisible" : 1
						}
					},
					"text" : "Capture B",
					"texton" : "Capture B",
					"varname" : "Capture B"
				}
			},
			{
				"box" : {
					"id" : "obj-51",
					"maxclass" : "live.text",
					"mode" : 0,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 880.0, 385.0, 60.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 132.0, 90.0, 58.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Generate",
							"parameter_shortname" : "Generate",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_invisible" : 1
						}
					},
					"text" : "Generate",
					"texton" : "Generate",
					"varname" : "Generate"
				}
			},
			{
				"box" : {
					"id" : "obj-52",
					"maxclass" : "live.text",
					"mode" : 0,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 950.0, 385.0, 60.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 194.0, 90.0, 58.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Panic",
							"parameter_shortname" : "Panic",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_invisible" : 1
						}
					},
					"text" : "Panic",
					"texton" : "Panic",
					"varname" : "Panic"
				}
			},
			{
				"box" : {
					"id" : "obj-53",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 740.0, 415.0, 130.0, 22.0 ],
					"text" : "/musicbridge/capture a"
				}
			},
			{
				"box" : {
					"id" : "obj-54",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 740.0, 445.0, 130.0, 22.0 ],
					"text" : "/musicbridge/capture b"
				}
			},
			{
				"box" : {
					"id" : "obj-55",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 880.0, 415.0, 130.0, 22.0 ],
					"text" : "/musicbridge/generate"
				}
			},
			{
				"box" : {
					"id" : "obj-56",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "bang" ],
					"patching_rect" : [ 1020.0, 415.0, 40.0, 22.0 ],
					"text" : "t b b"
				}
			},
			{
				"box" : {
					"id" : "obj-57",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 880.0, 475.0, 110.0, 22.0 ],
					"text" : "/musicbridge/panic"
				}
			},
			{
				"box" : {
					"id" : "obj-58",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1000.0, 475.0, 90.0, 22.0 ],
					"text" : "s ---mb-panic"
				}
			},
			{
				"box" : {
					"id" : "obj-59",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 870.0, 510.0, 80.0, 22.0 ],
					"text" : "s ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-60",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 740.0, 130.0, 80.0, 22.0 ],
					"text" : "r ---mb-push"
				}
			},
			{
				"box" : {
					"id" : "obj-61",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 840.0, 130.0, 80.0, 22.0 ],
					"text" : "outputvalue"
				}
			},
			{
				"box" : {
					"id" : "obj-62",
					"linecount" : 4,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 740.0, 540.0, 330.0, 62.0 ],
					"text" : "Each control sends its own address. Whenever the daemon\n(re)connects, [r ---mb-push] makes every control send its\ncurrent value again, so a restarted daemon gets the device's\nsettings."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-63",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1120.0, 100.0, 330.0, 20.0 ],
					"text" : "4 . OSC: out to 127.0.0.1:9000, replies in on 9001"
				}
			},
			{
				"box" : {
					"id" : "obj-64",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1120.0, 130.0, 80.0, 22.0 ],
					"text" : "r ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-65",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "bang" ],
					"patching_rect" : [ 1230.0, 130.0, 130.0, 22.0 ],
					"text" : "metro 1000 @active 1"
				}
			},
			{
				"box" : {
					"id" : "obj-66",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1230.0, 160.0, 120.0, 22.0 ],
					"text" : "/musicbridge/status"
				}
			},
			{
				"box" : {
					"id" : "obj-67",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1120.0, 195.0, 140.0, 22.0 ],
					"text" : "udpsend 127.0.0.1 9000"
				}
			},
			{
				"box" : {
					"id" : "obj-68",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1120.0, 240.0, 100.0, 22.0 ],
					"text" : "udpreceive 9001"
				}
			},
			{
				"box" : {
					"id" : "obj-69",
					"maxclass" : "newobj",
					"numinlets" : 10,
					"numoutlets" : 10,
					"outlettype" : [ "", "", "", "", "", "", "", "", "", "" ],
					"patching_rect" : [ 1120.0, 280.0, 630.0, 22.0 ],
					"text" : "route /musicbridge/gen/begin /musicbridge/gen/note /musicbridge/gen/end /musicbridge/status /musicbridge/error /musicbridge/learn/mapping /musicbridge/learn/end /musicbridge/similar/match /musicbridge/similar/end"
				}
			},
			{
				"box" : {
					"id" : "obj-70",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1120.0, 320.0, 90.0, 22.0 ],
					"text" : "s ---mb-begin"
				}
			},
			{
				"box" : {
					"id" : "obj-71",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1230.0, 320.0, 90.0, 22.0 ],
					"text" : "s ---mb-note"
				}
			},
			{
				"box" : {
					"id" : "obj-72",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1340.0, 320.0, 80.0, 22.0 ],
					"text" : "s ---mb-end"
				}
			},
			{
				"box" : {
					"id" : "obj-73",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1450.0, 320.0, 90.0, 22.0 ],
					"text" : "s ---mb-status"
				}
			},
			{
				"box" : {
					"id" : "obj-74",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1560.0, 320.0, 80.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-75",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1650.0, 320.0, 110.0, 22.0 ],
					"text" : "print musicbridge"
				}
			},
			{
				"box" : {
					"id" : "obj-76",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1560.0, 355.0, 200.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 232.0, 130.0, 200.0, 22.0 ],
					"text" : "no errors"
				}
			},
			{
				"box" : {
					"id" : "obj-77",
					"linecount" : 2,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1120.0, 390.0, 360.0, 34.0 ],
					"text" : "The daemon answers on port 9001 of the sender's host. /status is asked\nfor every second: a reply means \"connected\" (6)."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-78",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 715.0, 700.0, 20.0 ],
					"text" : "5 . Answers -> the newest answer, played on Live's 16th grid (musicbridge_player.js fills [coll], the 16th metro plays it)"
				}
			},
			{
				"box" : {
					"id" : "obj-79",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 745.0, 90.0, 22.0 ],
					"text" : "r ---mb-begin"
				}
			},
			{
				"box" : {
					"id" : "obj-81",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 140.0, 745.0, 90.0, 22.0 ],
					"text" : "r ---mb-note"
				}
			},
			{
				"box" : {
					"id" : "obj-89",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 580.0, 745.0, 90.0, 22.0 ],
					"text" : "r ---mb-step"
				}
			},
			{
				"box" : {
					"id" : "obj-90",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "int", "int" ],
					"patching_rect" : [ 580.0, 780.0, 40.0, 22.0 ],
					"text" : "t i i"
				}
			},
			{
				"box" : {
					"id" : "obj-92",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 350.0, 745.0, 90.0, 22.0 ],
					"text" : "r ---mb-flush"
				}
			},
			{
				"box" : {
					"id" : "obj-94",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 350.0, 780.0, 45.0, 22.0 ],
					"text" : "flush"
				}
			},
			{
				"box" : {
					"id" : "obj-96",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 4,
					"outlettype" : [ "", "", "", "" ],
					"patching_rect" : [ 600.0, 890.0, 60.0, 22.0 ],
					"saved_object_attributes" : {
						"embed" : 0,
						"precision" : 6
					},
					"text" : "coll"
				}
			},
			{
				"box" : {
					"id" : "obj-97",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"patching_rect" : [ 600.0, 925.0, 70.0, 22.0 ],
					"text" : "zl iter 2"
				}
			},
			{
				"box" : {
					"id" : "obj-103",
					"maxclass" : "newobj",
					"numinlets" : 7,
					"numoutlets" : 2,
					"outlettype" : [ "int", "" ],
					"patching_rect" : [ 600.0, 960.0, 100.0, 22.0 ],
					"text" : "midiformat"
				}
			},
			{
				"box" : {
					"id" : "obj-104",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 600.0, 995.0, 60.0, 22.0 ],
					"text" : "midiout"
				}
			},
			{
				"box" : {
					"id" : "obj-105",
					"linecount" : 7,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 1040.0, 700.0, 104.0 ],
					"text" : "gen/begin, gen/note and gen/end go to musicbridge_player.js, which places each answer whole when its end comes:\nthe newest answer owns the steps from its start on, so what is left of an older one is removed there and its notes\nstill sounding end there (a variation of an answer already over plays from the next bar line). It writes each\nstep's events (note-offs first, then note-ons) into [coll] under the step number. On every 16th the tick path reads\nthe step from [coll] in Max's scheduler thread -> zl iter 2 -> midiformat -> midiout, so notes leave on Live's grid\nalthough js runs deferred; the script hears of the tick next and removes the step. Stop ends every note that may\nsound (its own note-offs, right outlet); Panic also sends a note-off for every pitch."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-106",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 740.0, 700.0, 330.0, 20.0 ],
					"text" : "6 . Status display and \"connected\""
				}
			},
			{
				"box" : {
					"id" : "obj-107",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 740.0, 730.0, 90.0, 22.0 ],
					"text" : "r ---mb-status"
				}
			},
			{
				"box" : {
					"id" : "obj-108",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"patching_rect" : [ 740.0, 765.0, 40.0, 22.0 ],
					"text" : "t l b"
				}
			},
			{
				"box" : {
					"id" : "obj-109",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "bang" ],
					"patching_rect" : [ 890.0, 800.0, 40.0, 22.0 ],
					"text" : "t b b"
				}
			},
			{
				"box" : {
					"id" : "obj-110",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 890.0, 835.0, 30.0, 22.0 ],
					"text" : "1"
				}
			},
			{
				"box" : {
					"id" : "obj-111",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "bang" ],
					"patching_rect" : [ 940.0, 835.0, 80.0, 22.0 ],
					"text" : "delay 2500"
				}
			},
			{
				"box" : {
					"id" : "obj-112",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 940.0, 870.0, 30.0, 22.0 ],
					"text" : "0"
				}
			},
			{
				"box" : {
					"id" : "obj-113",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "", "int", "int" ],
					"patching_rect" : [ 890.0, 905.0, 50.0, 22.0 ],
					"text" : "change"
				}
			},
			{
				"box" : {
					"id" : "obj-114",
					"maxclass" : "newobj",
					"numinlets" : 3,
					"numoutlets" : 3,
					"outlettype" : [ "bang", "bang", "" ],
					"patching_rect" : [ 890.0, 940.0, 50.0, 22.0 ],
					"text" : "sel 0 1"
				}
			},
			{
				"box" : {
					"id" : "obj-115",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 890.0, 975.0, 100.0, 22.0 ],
					"text" : "set no daemon"
				}
			},
			{
				"box" : {
					"id" : "obj-116",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "bang", "bang", "bang" ],
					"patching_rect" : [ 1000.0, 975.0, 50.0, 22.0 ],
					"text" : "t b b b"
				}
			},
			{
				"box" : {
					"id" : "obj-117",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1000.0, 1010.0, 100.0, 22.0 ],
					"text" : "set connected"
				}
			},
			{
				"box" : {
					"id" : "obj-118",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1050.0, 1045.0, 80.0, 22.0 ],
					"text" : "s ---mb-push"
				}
			},
			{
				"box" : {
					"id" : "obj-119",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1140.0, 1045.0, 90.0, 22.0 ],
					"text" : "s ---mb-resend"
				}
			},
			{
				"box" : {
					"id" : "obj-120",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 890.0, 1080.0, 120.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 232.0, 8.0, 130.0, 22.0 ],
					"text" : "waiting for daemon"
				}
			},
			{
				"box" : {
					"id" : "obj-121",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 5,
					"outlettype" : [ "", "float", "int", "", "float" ],
					"patching_rect" : [ 740.0, 800.0, 110.0, 22.0 ],
					"text" : "unpack s 0. 0 s 0."
				}
			},
			{
				"box" : {
					"id" : "obj-122",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 740.0, 1120.0, 70.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-123",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 740.0, 1155.0, 110.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 232.0, 32.0, 100.0, 22.0 ],
					"text" : "mode"
				}
			},
			{
				"box" : {
					"format" : 6,
					"id" : "obj-124",
					"maxclass" : "flonum",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 860.0, 1155.0, 60.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 336.0, 32.0, 50.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-125",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 925.0, 1155.0, 30.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 388.0, 32.0, 30.0, 20.0 ],
					"text" : "bpm"
				}
			},
			{
				"box" : {
					"id" : "obj-126",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 970.0, 1120.0, 70.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-127",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 970.0, 1155.0, 120.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 232.0, 56.0, 130.0, 22.0 ],
					"text" : "model"
				}
			},
			{
				"box" : {
					"format" : 6,
					"id" : "obj-128",
					"maxclass" : "flonum",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "bang" ],
					"parameter_enable" : 0,
					"patching_rect" : [ 1100.0, 1155.0, 60.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 366.0, 56.0, 40.0, 22.0 ]
				}
			},
			{
				"box" : {
					"id" : "obj-129",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1165.0, 1155.0, 30.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 408.0, 56.0, 30.0, 20.0 ],
					"text" : "ms"
				}
			},
			{
				"box" : {
					"id" : "obj-130",
					"linecount" : 3,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 740.0, 1195.0, 420.0, 48.0 ],
					"text" : "Every /musicbridge/status reply restarts a 2.5 s delay; when it runs out the\ndevice shows \"no daemon\". On (re)connect the controls and transport state are\nsent again."
				}
			},
			{
				"box" : {
					"fontface" : 1,
					"id" : "obj-131",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1280.0, 700.0, 330.0, 20.0 ],
					"text" : "7 . Write the last answer into a clip (Live 11+)"
				}
			},
			{
				"box" : {
					"id" : "obj-132",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1280.0, 730.0, 90.0, 22.0 ],
					"text" : "r ---mb-begin"
				}
			},
			{
				"box" : {
					"id" : "obj-133",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1380.0, 730.0, 90.0, 22.0 ],
					"text" : "r ---mb-note"
				}
			},
			{
				"box" : {
					"id" : "obj-134",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1480.0, 730.0, 80.0, 22.0 ],
					"text" : "r ---mb-end"
				}
			},
			{
				"box" : {
					"id" : "obj-135",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1280.0, 765.0, 90.0, 22.0 ],
					"text" : "prepend begin"
				}
			},
			{
				"box" : {
					"id" : "obj-136",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1380.0, 765.0, 90.0, 22.0 ],
					"text" : "prepend note"
				}
			},
			{
				"box" : {
					"id" : "obj-137",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1480.0, 765.0, 80.0, 22.0 ],
					"text" : "prepend end"
				}
			},
			{
				"box" : {
					"id" : "obj-138",
					"maxclass" : "live.text",
					"mode" : 0,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 1580.0, 730.0, 60.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 256.0, 90.0, 58.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Write clip",
							"parameter_shortname" : "Write clip",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_invisible" : 1
						}
					},
					"text" : "Write clip",
					"texton" : "Write clip",
					"varname" : "Write clip"
				}
			},
			{
				"box" : {
					"id" : "obj-139",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1580.0, 765.0, 40.0, 22.0 ],
					"text" : "write"
				}
			},
			{
				"box" : {
					"id" : "obj-140",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1280.0, 805.0, 160.0, 22.0 ],
					"saved_object_attributes" : {
						"filename" : "musicbridge_clip.js",
						"parameter_enable" : 0
					},
					"text" : "js musicbridge_clip.js"
				}
			},
			{
				"box" : {
					"id" : "obj-141",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1280.0, 840.0, 70.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-142",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1280.0, 875.0, 220.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 8.0, 130.0, 220.0, 22.0 ],
					"text" : "no answer yet"
				}
			},
			{
				"box" : {
					"id" : "obj-143",
					"linecount" : 3,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1280.0, 910.0, 360.0, 48.0 ],
					"text" : "musicbridge_clip.js keeps the last complete answer and, on Write clip,\ncreates a clip of its length in the next empty slot of this track\n(ClipSlot.create_clip, Clip.add_new_notes)."
				}
			},
			{
				"box" : {
					"id" : "obj-144",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1120.0, 450.0, 360.0, 20.0 ],
					"text" : "8 . Live's song scale -> /musicbridge/param/scale (Live 12)"
				}
			},
			{
				"box" : {
					"id" : "obj-145",
					"maxclass" : "live.toggle",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 1120.0, 480.0, 20.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 322.0, 90.0, 15.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Live scale",
							"parameter_shortname" : "Live scale",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_initial" : [ 0 ],
							"parameter_initial_enable" : 1
						}
					},
					"varname" : "Live scale"
				}
			},
			{
				"box" : {
					"id" : "obj-146",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1145.0, 480.0, 70.0, 20.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 338.0, 88.0, 70.0, 18.0 ],
					"text" : "Live scale"
				}
			},
			{
				"box" : {
					"id" : "obj-147",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "bang", "int", "int" ],
					"patching_rect" : [ 1230.0, 480.0, 100.0, 22.0 ],
					"text" : "live.thisdevice"
				}
			},
			{
				"box" : {
					"id" : "obj-148",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1230.0, 515.0, 45.0, 22.0 ],
					"text" : "ready"
				}
			},
			{
				"box" : {
					"id" : "obj-149",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1340.0, 480.0, 80.0, 22.0 ],
					"text" : "r ---mb-push"
				}
			},
			{
				"box" : {
					"id" : "obj-150",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1340.0, 515.0, 40.0, 22.0 ],
					"text" : "push"
				}
			},
			{
				"box" : {
					"id" : "obj-151",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"patching_rect" : [ 1120.0, 550.0, 160.0, 22.0 ],
					"saved_object_attributes" : {
						"filename" : "musicbridge_scale.js",
						"parameter_enable" : 0
					},
					"text" : "js musicbridge_scale.js"
				}
			},
			{
				"box" : {
					"id" : "obj-152",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1120.0, 585.0, 200.0, 22.0 ],
					"text" : "prepend /musicbridge/param/scale"
				}
			},
			{
				"box" : {
					"id" : "obj-153",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"outlettype" : [ ],
					"patching_rect" : [ 1120.0, 620.0, 80.0, 22.0 ],
					"text" : "s ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-154",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1330.0, 585.0, 70.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-155",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1330.0, 620.0, 150.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 322.0, 108.0, 110.0, 20.0 ],
					"text" : "scale: not followed"
				}
			},
			{
				"box" : {
					"id" : "obj-156",
					"linecount" : 5,
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1440.0, 480.0, 310.0, 90.0 ],
					"text" : "On: musicbridge_scale.js reads the song's scale\n(Song.root_note, Song.scale_intervals) and observes it:\nevery change sends the pitch classes, root first,\nto /musicbridge/param/scale, so no answer leaves\nthe scale. Off sends \"off\". On reconnect it is sent again."
				}
			},
			{
				"box" : {
					"id" : "obj-157",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "int" ],
					"patching_rect" : [ 90.0, 205.0, 35.0, 22.0 ],
					"text" : "* 1"
				}
			},
			{
				"box" : {
					"id" : "obj-158",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 235.0, 60.0, 22.0 ],
					"text" : "pack 0 0"
				}
			},
			{
				"box" : {
					"id" : "obj-159",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "", "int", "int" ],
					"patching_rect" : [ 630.0, 470.0, 50.0, 22.0 ],
					"text" : "change"
				}
			},
			{
				"box" : {
					"id" : "obj-160",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "bang", "" ],
					"patching_rect" : [ 630.0, 505.0, 40.0, 22.0 ],
					"text" : "sel 1"
				}
			},
			{
				"box" : {
					"id" : "obj-161",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 650.0, 285.0, 45.0, 22.0 ],
					"text" : "set 0"
				}
			},
			{
				"box" : {
					"id" : "obj-162",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 500.0, 815.0, 80.0, 22.0 ],
					"text" : "prepend tick"
				}
			},
			{
				"box" : {
					"id" : "obj-163",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 250.0, 745.0, 80.0, 22.0 ],
					"text" : "r ---mb-end"
				}
			},
			{
				"box" : {
					"id" : "obj-164",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 780.0, 90.0, 22.0 ],
					"text" : "prepend begin"
				}
			},
			{
				"box" : {
					"id" : "obj-165",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 140.0, 780.0, 90.0, 22.0 ],
					"text" : "prepend note"
				}
			},
			{
				"box" : {
					"id" : "obj-166",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 250.0, 780.0, 80.0, 22.0 ],
					"text" : "prepend end"
				}
			},
			{
				"box" : {
					"id" : "obj-167",
					"maxclass" : "newobj",
					"numinlets" : 0,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 460.0, 745.0, 95.0, 22.0 ],
					"text" : "r ---mb-panic"
				}
			},
			{
				"box" : {
					"id" : "obj-168",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 460.0, 780.0, 45.0, 22.0 ],
					"text" : "panic"
				}
			},
			{
				"box" : {
					"id" : "obj-169",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"patching_rect" : [ 30.0, 850.0, 180.0, 22.0 ],
					"saved_object_attributes" : {
						"filename" : "musicbridge_player.js",
						"parameter_enable" : 0
					},
					"text" : "js musicbridge_player.js"
				}
			},
			{
				"box" : {
					"id" : "obj-170",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1280.0, 990.0, 330.0, 20.0 ],
					"text" : "9 . MIDI learn -> /musicbridge/learn"
				}
			},
			{
				"box" : {
					"id" : "obj-171",
					"maxclass" : "live.menu",
					"numinlets" : 1,
					"numoutlets" : 3,
					"outlettype" : [ "", "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 1280.0, 1020.0, 110.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 8.0, 110.0, 100.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Learn target",
							"parameter_shortname" : "Learn target",
							"parameter_type" : 2,
							"parameter_mmax" : 17,
							"parameter_enum" : [ "temperature", "novelty", "bars", "variations", "silence", "steps", "mode", "ending", "fallback", "model", "capture_a", "capture_b", "generate", "panic", "attr_density", "attr_register", "attr_range", "attr_stepwise" ],
							"parameter_initial" : [ 0 ],
							"parameter_initial_enable" : 1
						}
					},
					"varname" : "Learn target"
				}
			},
			{
				"box" : {
					"id" : "obj-172",
					"maxclass" : "live.text",
					"mode" : 0,
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 1410.0, 1020.0, 60.0, 15.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 112.0, 110.0, 50.0, 15.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Learn",
							"parameter_shortname" : "Learn",
							"parameter_type" : 2,
							"parameter_mmax" : 1,
							"parameter_enum" : [ "off", "on" ],
							"parameter_invisible" : 1
						}
					},
					"text" : "Learn",
					"texton" : "Learn",
					"varname" : "Learn"
				}
			},
			{
				"box" : {
					"id" : "obj-173",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "bang" ],
					"patching_rect" : [ 1410.0, 1050.0, 30.0, 22.0 ],
					"text" : "t b"
				}
			},
			{
				"box" : {
					"id" : "obj-174",
					"maxclass" : "newobj",
					"numinlets" : 2,
					"numoutlets" : 2,
					"outlettype" : [ "", "" ],
					"patching_rect" : [ 1280.0, 1085.0, 60.0, 22.0 ],
					"text" : "zl reg"
				}
			},
			{
				"box" : {
					"id" : "obj-175",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1280.0, 1120.0, 160.0, 22.0 ],
					"text" : "prepend /musicbridge/learn"
				}
			},
			{
				"box" : {
					"id" : "obj-176",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1280.0, 1155.0, 80.0, 22.0 ],
					"text" : "s ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-177",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1480.0, 1085.0, 80.0, 22.0 ],
					"text" : "prepend set"
				}
			},
			{
				"box" : {
					"id" : "obj-178",
					"maxclass" : "message",
					"numinlets" : 2,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 1480.0, 1120.0, 200.0, 22.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 166.0, 108.0, 152.0, 20.0 ],
					"text" : "no mappings"
				}
			},
			{
				"box" : {
					"id" : "obj-179",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1580.0, 1085.0, 140.0, 22.0 ],
					"text" : "print musicbridge-learn"
				}
			},
			{
				"box" : {
					"id" : "obj-192",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1500.0, 395.0, 150.0, 22.0 ],
					"text" : "print musicbridge-similar"
				}
			},
			{
				"box" : {
					"id" : "obj-180",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 1480.0, 1160.0, 270.0, 90.0 ],
					"text" : "Pick a target, press Learn, then move a knob or hit a pad on the daemon's MIDI input (musicbridge in; the track's notes reach it too, as /musicbridge/note). The reply lists the mappings (/musicbridge/learn/mapping ... /end): the last learned is shown, all are printed."
				}
			},
			{
				"box" : {
					"id" : "obj-181",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 30.0, 1160.0, 420.0, 20.0 ],
					"text" : "10 . Attribute knobs -> /musicbridge/param/attr/*"
				}
			},
			{
				"box" : {
					"id" : "obj-182",
					"maxclass" : "live.dial",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 30.0, 1190.0, 44.0, 48.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 444.0, 8.0, 44.0, 48.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Density",
							"parameter_shortname" : "Density",
							"parameter_type" : 0,
							"parameter_mmin" : -3.0,
							"parameter_mmax" : 3.0,
							"parameter_initial" : [ 0.0 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 1
						}
					},
					"varname" : "Density"
				}
			},
			{
				"box" : {
					"id" : "obj-186",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 1250.0, 240.0, 22.0 ],
					"text" : "prepend /musicbridge/param/attr/density"
				}
			},
			{
				"box" : {
					"id" : "obj-183",
					"maxclass" : "live.dial",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 100.0, 1190.0, 44.0, 48.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 496.0, 8.0, 44.0, 48.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Register",
							"parameter_shortname" : "Register",
							"parameter_type" : 0,
							"parameter_mmin" : -3.0,
							"parameter_mmax" : 3.0,
							"parameter_initial" : [ 0.0 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 1
						}
					},
					"varname" : "Register"
				}
			},
			{
				"box" : {
					"id" : "obj-187",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 1280.0, 240.0, 22.0 ],
					"text" : "prepend /musicbridge/param/attr/register"
				}
			},
			{
				"box" : {
					"id" : "obj-184",
					"maxclass" : "live.dial",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 170.0, 1190.0, 44.0, 48.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 444.0, 64.0, 44.0, 48.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Range",
							"parameter_shortname" : "Range",
							"parameter_type" : 0,
							"parameter_mmin" : -3.0,
							"parameter_mmax" : 3.0,
							"parameter_initial" : [ 0.0 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 1
						}
					},
					"varname" : "Range"
				}
			},
			{
				"box" : {
					"id" : "obj-188",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 1310.0, 240.0, 22.0 ],
					"text" : "prepend /musicbridge/param/attr/range"
				}
			},
			{
				"box" : {
					"id" : "obj-185",
					"maxclass" : "live.dial",
					"numinlets" : 1,
					"numoutlets" : 2,
					"outlettype" : [ "", "float" ],
					"parameter_enable" : 1,
					"patching_rect" : [ 240.0, 1190.0, 44.0, 48.0 ],
					"presentation" : 1,
					"presentation_rect" : [ 496.0, 64.0, 44.0, 48.0 ],
					"saved_attribute_attributes" : {
						"valueof" : {
							"parameter_longname" : "Stepwise",
							"parameter_shortname" : "Stepwise",
							"parameter_type" : 0,
							"parameter_mmin" : -3.0,
							"parameter_mmax" : 3.0,
							"parameter_initial" : [ 0.0 ],
							"parameter_initial_enable" : 1,
							"parameter_unitstyle" : 1
						}
					},
					"varname" : "Stepwise"
				}
			},
			{
				"box" : {
					"id" : "obj-189",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 1,
					"outlettype" : [ "" ],
					"patching_rect" : [ 30.0, 1340.0, 240.0, 22.0 ],
					"text" : "prepend /musicbridge/param/attr/stepwise"
				}
			},
			{
				"box" : {
					"id" : "obj-190",
					"maxclass" : "newobj",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 290.0, 1340.0, 80.0, 22.0 ],
					"text" : "s ---mb-osc"
				}
			},
			{
				"box" : {
					"id" : "obj-191",
					"maxclass" : "comment",
					"numinlets" : 1,
					"numoutlets" : 0,
					"patching_rect" : [ 390.0, 1190.0, 340.0, 90.0 ],
					"text" : "Each knob moves every z the model decodes along one attribute vector (0 = off): Density (more notes), Register (higher), Range (wider), Stepwise (more steps; negative: more leaps). Needs a model exported with --data (docs/latent.md); a model without vectors ignores them. Sent again on every (re)connect."
				}
			}
		],
		"lines" : [
			{
				"patchline" : {
					"destination" : [ "obj-9", 0 ],
					"source" : [ "obj-4", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-7", 1 ],
					"source" : [ "obj-4", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-7", 0 ],
					"source" : [ "obj-5", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-8", 0 ],
					"source" : [ "obj-7", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-11", 0 ],
					"source" : [ "obj-10", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-15", 0 ],
					"source" : [ "obj-14", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-16", 0 ],
					"source" : [ "obj-15", 4 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-17", 0 ],
					"source" : [ "obj-16", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-19", 0 ],
					"source" : [ "obj-15", 6 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-20", 0 ],
					"source" : [ "obj-19", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-21", 0 ],
					"source" : [ "obj-20", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-22", 0 ],
					"source" : [ "obj-21", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-24", 0 ],
					"source" : [ "obj-21", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-26", 0 ],
					"source" : [ "obj-25", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-16", 0 ],
					"source" : [ "obj-26", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-19", 0 ],
					"source" : [ "obj-26", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-28", 0 ],
					"source" : [ "obj-27", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-29", 0 ],
					"source" : [ "obj-28", 7 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-32", 0 ],
					"source" : [ "obj-29", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-33", 0 ],
					"source" : [ "obj-32", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-30", 0 ],
					"source" : [ "obj-29", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-31", 0 ],
					"source" : [ "obj-30", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-34", 0 ],
					"source" : [ "obj-17", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-34", 0 ],
					"source" : [ "obj-23", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-34", 0 ],
					"source" : [ "obj-22", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-34", 0 ],
					"source" : [ "obj-31", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-38", 0 ],
					"source" : [ "obj-37", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-40", 0 ],
					"source" : [ "obj-39", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-42", 0 ],
					"source" : [ "obj-41", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-45", 0 ],
					"source" : [ "obj-43", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-48", 0 ],
					"source" : [ "obj-46", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-53", 0 ],
					"source" : [ "obj-49", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-54", 0 ],
					"source" : [ "obj-50", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-55", 0 ],
					"source" : [ "obj-51", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-56", 0 ],
					"source" : [ "obj-52", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-57", 0 ],
					"source" : [ "obj-56", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-58", 0 ],
					"source" : [ "obj-56", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-38", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-40", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-42", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-45", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-48", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-53", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-54", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-55", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-59", 0 ],
					"source" : [ "obj-57", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-61", 0 ],
					"source" : [ "obj-60", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-37", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-39", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-41", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-43", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-46", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-67", 0 ],
					"source" : [ "obj-64", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-66", 0 ],
					"source" : [ "obj-65", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-67", 0 ],
					"source" : [ "obj-66", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-69", 0 ],
					"source" : [ "obj-68", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-70", 0 ],
					"source" : [ "obj-69", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-71", 0 ],
					"source" : [ "obj-69", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-72", 0 ],
					"source" : [ "obj-69", 2 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-73", 0 ],
					"source" : [ "obj-69", 3 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-74", 0 ],
					"source" : [ "obj-69", 4 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-75", 0 ],
					"source" : [ "obj-69", 4 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-76", 0 ],
					"source" : [ "obj-74", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-90", 0 ],
					"source" : [ "obj-89", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-96", 0 ],
					"source" : [ "obj-90", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-97", 0 ],
					"source" : [ "obj-96", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-104", 0 ],
					"source" : [ "obj-103", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-108", 0 ],
					"source" : [ "obj-107", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-109", 0 ],
					"source" : [ "obj-108", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-111", 0 ],
					"source" : [ "obj-109", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-110", 0 ],
					"source" : [ "obj-109", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-113", 0 ],
					"source" : [ "obj-110", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-112", 0 ],
					"source" : [ "obj-111", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-113", 0 ],
					"source" : [ "obj-112", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-114", 0 ],
					"source" : [ "obj-113", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-115", 0 ],
					"source" : [ "obj-114", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-116", 0 ],
					"source" : [ "obj-114", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-117", 0 ],
					"source" : [ "obj-116", 2 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-118", 0 ],
					"source" : [ "obj-116", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-119", 0 ],
					"source" : [ "obj-116", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-120", 0 ],
					"source" : [ "obj-115", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-120", 0 ],
					"source" : [ "obj-117", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-121", 0 ],
					"source" : [ "obj-108", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-122", 0 ],
					"source" : [ "obj-121", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-123", 0 ],
					"source" : [ "obj-122", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-124", 0 ],
					"source" : [ "obj-121", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-126", 0 ],
					"source" : [ "obj-121", 3 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-127", 0 ],
					"source" : [ "obj-126", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-128", 0 ],
					"source" : [ "obj-121", 4 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-135", 0 ],
					"source" : [ "obj-132", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-136", 0 ],
					"source" : [ "obj-133", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-137", 0 ],
					"source" : [ "obj-134", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-140", 0 ],
					"source" : [ "obj-135", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-140", 0 ],
					"source" : [ "obj-136", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-140", 0 ],
					"source" : [ "obj-137", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-140", 0 ],
					"source" : [ "obj-139", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-139", 0 ],
					"source" : [ "obj-138", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-141", 0 ],
					"source" : [ "obj-140", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-142", 0 ],
					"source" : [ "obj-141", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-151", 0 ],
					"source" : [ "obj-145", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-148", 0 ],
					"source" : [ "obj-147", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-151", 0 ],
					"source" : [ "obj-148", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-150", 0 ],
					"source" : [ "obj-149", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-151", 0 ],
					"source" : [ "obj-150", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-152", 0 ],
					"source" : [ "obj-151", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-153", 0 ],
					"source" : [ "obj-152", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-154", 0 ],
					"source" : [ "obj-151", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-155", 0 ],
					"source" : [ "obj-154", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-158", 0 ],
					"source" : [ "obj-9", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-157", 0 ],
					"source" : [ "obj-9", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-157", 1 ],
					"source" : [ "obj-9", 2 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-158", 1 ],
					"source" : [ "obj-157", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-10", 0 ],
					"source" : [ "obj-158", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-159", 0 ],
					"source" : [ "obj-28", 6 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-160", 0 ],
					"source" : [ "obj-159", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-23", 0 ],
					"source" : [ "obj-160", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-161", 0 ],
					"source" : [ "obj-21", 2 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-159", 0 ],
					"source" : [ "obj-161", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-159", 0 ],
					"source" : [ "obj-26", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-164", 0 ],
					"source" : [ "obj-79", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-165", 0 ],
					"source" : [ "obj-81", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-166", 0 ],
					"source" : [ "obj-163", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-169", 0 ],
					"source" : [ "obj-164", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-169", 0 ],
					"source" : [ "obj-165", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-169", 0 ],
					"source" : [ "obj-166", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-94", 0 ],
					"source" : [ "obj-92", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-169", 0 ],
					"source" : [ "obj-94", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-168", 0 ],
					"source" : [ "obj-167", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-169", 0 ],
					"source" : [ "obj-168", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-162", 0 ],
					"source" : [ "obj-90", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-169", 0 ],
					"source" : [ "obj-162", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-96", 0 ],
					"source" : [ "obj-169", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-103", 0 ],
					"source" : [ "obj-169", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-103", 0 ],
					"source" : [ "obj-97", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-174", 1 ],
					"source" : [ "obj-171", 1 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-173", 0 ],
					"source" : [ "obj-172", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-174", 0 ],
					"source" : [ "obj-173", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-175", 0 ],
					"source" : [ "obj-174", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-176", 0 ],
					"source" : [ "obj-175", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-177", 0 ],
					"source" : [ "obj-69", 5 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-179", 0 ],
					"source" : [ "obj-69", 5 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-179", 0 ],
					"source" : [ "obj-69", 6 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-192", 0 ],
					"source" : [ "obj-69", 7 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-192", 0 ],
					"source" : [ "obj-69", 8 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-178", 0 ],
					"source" : [ "obj-177", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-186", 0 ],
					"source" : [ "obj-182", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-190", 0 ],
					"source" : [ "obj-186", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-182", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-187", 0 ],
					"source" : [ "obj-183", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-190", 0 ],
					"source" : [ "obj-187", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-183", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-188", 0 ],
					"source" : [ "obj-184", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-190", 0 ],
					"source" : [ "obj-188", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-184", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-189", 0 ],
					"source" : [ "obj-185", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-190", 0 ],
					"source" : [ "obj-189", 0 ]
				}
			},
			{
				"patchline" : {
					"destination" : [ "obj-185", 0 ],
					"source" : [ "obj-61", 0 ]
				}
			}
		],
		"dependency_cache" : [ ],
		"autosave" : 0
	}
}
