"""Re-embedding the library with another text embedder."""

from typing import Annotated

import typer

from api.cli.common import JsonOpt, app, die, emit, local_only
from core.config import get_settings
from core.errors import ModelUnavailable


@app.command()
def reembed(model: Annotated[str | None, typer.Option(
                help="text embedder (hub id, short name or directory); default: the configured "
                     "one (CHRONOSCOPE_EMBED__MODEL)")] = None,
            as_json: JsonOpt = False) -> None:
    """Re-embed every stored segment with the text embedder and rebuild the vector index.
    Safe to stop and run again: it goes on where it stopped."""
    local_only("reembed")
    from indexer.reembed import reembed as run
    settings = get_settings()
    if model is not None:
        settings = settings.model_copy(update={"embed": settings.embed.model_copy(
            update={"model": model})})

    def progress(done: int, total: int) -> None:
        if not as_json:
            typer.echo(f"{done}/{total} segments", err=True)
    try:
        result = run(settings, progress=progress)
    except ModelUnavailable as e:
        die(str(e))
    note = ""
    if model is not None and model != get_settings().embed.model:
        note = (f"\nsearches use the configured embedder: set CHRONOSCOPE_EMBED__MODEL={model} "
                "so that they use this one")
    emit(result, as_json, f"re-embedded {result['embedded']} segments with {result['model']}; "
                          f"index: {result['vectors']} vectors{note}")
