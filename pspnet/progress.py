"""Progress bars (tqdm) that suit where they are written.

On a terminal a bar redraws itself in place. Written to a file or a pipe
(a log, ``| tee``, a batch system's output) it prints plain lines instead,
one every :data:`PIPE_INTERVAL` seconds and a last one at the end, with no
carriage returns and no terminal escape codes, so that the log reads as
text.
"""

import re
import sys

from tqdm import tqdm

#: Seconds between the lines of a bar written to a file or a pipe.
PIPE_INTERVAL = 10.0

#: Seconds a bar of one long piece of work (the windows of one image)
#: waits before it appears: short work shows no bar.
WORK_DELAY = 3.0

_ESCAPES = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|\x1b[@-_]')


def is_terminal(stream):
    """Whether ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineWriter(object):
    """A text stream for tqdm that turns each redraw into one plain line:
    escape codes and carriage returns removed, trailing padding dropped."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = _ESCAPES.sub('', text)
        for line in text.replace('\r', '\n').split('\n'):
            line = line.rstrip()
            if line:
                self.stream.write(line + '\n')

    def flush(self):
        try:
            self.stream.flush()
        except (AttributeError, ValueError):
            pass

    def isatty(self):
        return False


def bar(total=None, unit='it', desc=None, file=None, disable=False,
        delay=0.0, leave=True):
    """A :class:`tqdm.tqdm` bar for ``file`` (default: ``sys.stderr``).

    Args:
        total (int or None): Units of work (None when unknown).
        unit (str): What a unit is (``'image'``, ``'frame'``,
            ``'window'``).
        desc (str or None): Text before the bar.
        file: The stream written to; not a terminal gives plain lines every
            :data:`PIPE_INTERVAL` seconds.
        disable (bool): No bar at all.
        delay (float): Seconds before the bar first appears.
        leave (bool): Keep the finished bar (its last line) on screen.

    Returns:
        tqdm.tqdm: The bar; ``bar.write(text)`` prints a message above it.
    """
    file = sys.stderr if file is None else file
    kwargs = dict(total=total, unit=unit, desc=desc, disable=disable,
                  delay=delay, leave=leave)
    if is_terminal(file):
        return tqdm(file=file, dynamic_ncols=True, **kwargs)
    kwargs['leave'] = True  # its last line stays in the log
    return tqdm(file=LineWriter(file), ncols=100, ascii=True,
                mininterval=PIPE_INTERVAL, maxinterval=PIPE_INTERVAL,
                **kwargs)


def write(text, file=None):
    """Print a line without breaking the bars on a terminal (plain
    ``print`` elsewhere)."""
    file = sys.stderr if file is None else file
    if is_terminal(file):
        tqdm.write(text, file=file)
    else:
        file.write(text + '\n')
        try:
            file.flush()
        except (AttributeError, ValueError):
            pass


def work_progress(unit='window', desc=None, file=None, delay=None):
    """A ``progress(done, total)`` callback (as
    :meth:`pspnet.PSPNet.predict` takes) that shows a bar once the work
    has run :data:`WORK_DELAY` seconds, and closes it when ``done`` reaches
    ``total``.

    Returns:
        callable: ``progress(done, total)``; ``progress.close()`` ends the
        bar early (an error).
    """
    state = {'bar': None}
    delay = WORK_DELAY if delay is None else delay

    def progress(done, total):
        if state['bar'] is None:
            state['bar'] = bar(total=total, unit=unit, desc=desc, file=file,
                               delay=delay, leave=False)
        state['bar'].update(done - state['bar'].n)
        if done >= total:
            close()

    def close():
        if state['bar'] is not None:
            state['bar'].close()
            state['bar'] = None

    progress.close = close
    return progress
