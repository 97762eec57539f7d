"""The progress bar of :func:`~softmaxkit.streaming.softmax_file`: tqdm, rich, or none."""

from __future__ import annotations


def _progress_bar(total, enabled, description):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=description, unit="chunk")
    except ImportError:
        pass
    try:
        from rich.console import Console
        from rich.progress import Progress

        # On standard error, as tqdm's: standard output may be the data.
        bar = Progress(console=Console(stderr=True))
        bar.start()
        task = bar.add_task(description, total=total)
        return (bar, task)
    except ImportError:
        return None


def _advance(bar):
    if bar is None:
        return
    if isinstance(bar, tuple):
        bar[0].advance(bar[1])
    else:
        bar.update(1)


def _close(bar):
    if bar is None:
        return
    if isinstance(bar, tuple):
        bar[0].stop()
    else:
        bar.close()
