"""What the command line prints for people, and its exit code for an error answer of a
server. No Typer here: the quick search lane (api/cli/lane.py) prints with it too."""

from core.times import clock, to_ms

USER_ERRORS = (400, 413, 415, 422)   # an answer about the input: exit 2; other errors: 1


def span(row: dict) -> str:
    """A moment's or a chapter's [start, end], from its JSON seconds."""
    return f"{clock(to_ms(row['start']), frac_sep='.')}-{clock(to_ms(row['end']), frac_sep='.')}"


def moment_lines(rows: list[dict]) -> str:
    """One line per moment: score (weak or not), video, span, kinds, text."""
    return "\n".join(
        f"{r['score']:.2f}{' (weak)' if r.get('weak') else ''}  {r['video_id'][:8]}  "
        f"{span(r)}  [{','.join(r['kinds'])}]  {r['text'][:100]}"
        for r in rows) or "no matches"
