"""Letters: one HTML and plain-text advising letter per student, rendered in batches.

The flow calls `render_letters` (in this process and in a second one, `RenderPool`); a
letter's content hash tells delivery whether it changed since the last one sent.
"""

from flows.letters.model import Letter, LetterSummary
from flows.letters.render import render_letters, with_bodies
from flows.letters.render_process import RenderPool

__all__ = ["Letter", "LetterSummary", "RenderPool", "render_letters", "with_bodies"]
