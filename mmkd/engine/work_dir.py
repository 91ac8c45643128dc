"""What a training run finds in its work dir: the checkpoint to resume, earlier runs."""
import glob
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmkd.utils import CorruptCheckpointError, UnsafeCheckpointError, safe_torch_load
from mmkd.utils.checkpoint import check_readable

#: The file in which MMEngine names the newest checkpoint of a work dir.
LAST_CHECKPOINT = 'last_checkpoint'


def checkpoints_in(work_dir: str) -> List[str]:
    """The training checkpoints of a work dir, newest first (by epoch or iteration,
    then by modification time); ``best_*`` copies are left out."""
    paths = [p for p in glob.glob(osp.join(work_dir, '*.pth'))
             if not osp.basename(p).startswith('best_')]

    def order(path: str) -> Tuple[int, float]:
        found = re.search(r'(\d+)\.pth$', osp.basename(path))
        return (int(found.group(1)) if found else -1, osp.getmtime(path))

    return sorted(paths, key=order, reverse=True)


def _named_last(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """The checkpoint ``last_checkpoint`` names, read relative to ``work_dir``
    when the work dir was copied from elsewhere."""
    notes: List[str] = []
    record = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(record):
        return None, notes
    with open(record) as f:
        named = f.read().strip()
    local = osp.join(work_dir, osp.basename(named))
    here = osp.abspath(osp.dirname(named) or work_dir) == osp.abspath(work_dir)
    if not here and osp.isfile(local):
        notes.append(f'{record} names {named}, in another directory (a copied work dir?); '
                     f'resuming from the file of this work dir, {local}.')
        return local, notes
    return named, notes


def _loads(path: str) -> Optional[str]:
    """``None`` if ``path`` loads safely, else why not."""
    try:
        safe_torch_load(path)
    except UnsafeCheckpointError as err:
        return f'refused as unsafe: {err}'
    except (CorruptCheckpointError, OSError) as err:
        return str(err)
    return None


def _readable(path: str) -> bool:
    """A cheap check (nothing unpickled) for naming alternatives in a message."""
    try:
        check_readable(path)
    except (CorruptCheckpointError, OSError):
        return False
    return True


def resume_checkpoint(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """The checkpoint an automatic resume (``--resume`` without a path) starts from.

    The one ``last_checkpoint`` names (read relative to the work dir when
    the dir was copied); if it is corrupt, truncated, missing or refused as
    unsafe, the newest checkpoint of the work dir that loads. Every choice that is not the
    obvious one is explained in the returned notes.

    Args:
        work_dir: The run's work dir.

    Returns:
        ``(checkpoint or None when the work dir has none, notes for the log)``.

    Raises:
        CorruptCheckpointError: the work dir has checkpoints but none loads.
    """
    named, notes = _named_last(work_dir)
    candidates = checkpoints_in(work_dir)
    if named is not None:
        problem = None if osp.isfile(named) else 'it does not exist'
        problem = problem or _loads(named)
        if problem is None:
            return named, notes
        notes.append(f'the newest checkpoint {named} cannot be resumed: {problem}')
        candidates = [c for c in candidates if osp.abspath(c) != osp.abspath(named)]
    for candidate in candidates:
        problem = _loads(candidate)
        if problem is None:
            if notes:
                notes.append(f'resuming from {candidate} instead, the newest checkpoint of '
                             f'{work_dir} that loads.')
            return candidate, notes
        notes.append(f'{candidate} cannot be resumed either: {problem}')
    if notes:
        raise CorruptCheckpointError(
            f'no checkpoint of {work_dir} can be resumed:\n  ' + '\n  '.join(notes) +
            '\nTrain afresh with --work-dir <a new dir>, or restore a checkpoint.')
    return None, notes


def check_requested_checkpoint(path: str) -> None:
    """Refuse a ``--resume PATH`` that cannot be loaded, naming checkpoints that can.

    Raises:
        CorruptCheckpointError: the file is corrupt or truncated.
        UnsafeCheckpointError: the file holds objects other than checkpoint data.
    """
    if '://' in path or not osp.isfile(path):
        return  # a URL, or a missing file: the loader says so itself
    try:
        safe_torch_load(path)  # an unsafe file raises UnsafeCheckpointError as it is
        return
    except (CorruptCheckpointError, OSError) as err:
        problem = str(err)
    others = [c for c in checkpoints_in(osp.dirname(path) or '.')
              if osp.abspath(c) != osp.abspath(path) and _readable(c)]
    hint = (f' Checkpoints of {osp.dirname(path) or "."} that are intact: {others[:3]}; pass '
            'one of them to --resume.') if others else ''
    raise CorruptCheckpointError(f'cannot resume from {path}: {problem}{hint}')


def earlier_run(work_dir: str) -> List[str]:
    """Checkpoints (and ``last_checkpoint``) an earlier run left in ``work_dir``."""
    found = checkpoints_in(work_dir) if osp.isdir(work_dir) else []
    record = osp.join(work_dir, LAST_CHECKPOINT)
    return found + ([record] if osp.isfile(record) else [])


def clear_earlier_run(work_dir: str) -> List[str]:
    """Delete what :func:`earlier_run` finds (``--overwrite``); returns the paths."""
    paths = earlier_run(work_dir) + glob.glob(osp.join(work_dir, 'best_*.pth'))
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:  # another process of the same launch removed it
            pass
    return paths
