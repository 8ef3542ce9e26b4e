"""The live bridge: `musicbridge serve` (MIDI/OSC in, clock-locked answers out). Never imports torch."""
