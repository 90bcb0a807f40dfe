"""Text from a terminal (a console log) made plain: control sequences out, line ends normalised."""

from __future__ import annotations

import re

# ECMA-48: CSI (ESC [ … final, or the 8-bit CSI), OSC/DCS/SOS/PM/APC strings (to BEL or ST),
# other escape sequences (ESC, intermediates, final: charset selection, keypad modes, ESC 7/8,
# ESC c), then every C0/C1 control but tab and newline
_CONTROL = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
_LINE_END = re.compile(r"\r+\n|\r")


def strip_terminal(text: str) -> str:
    """`text` without terminal control sequences (colours, cursor moves, titles, clears …):
    CR LF (and CR CR LF, which ttys write) and lone CRs become LF; tabs and LFs stay."""
    return _CONTROL.sub("", _LINE_END.sub("\n", text))
