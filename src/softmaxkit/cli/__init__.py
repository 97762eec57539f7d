"""The ``softmax`` command.

``softmax 1 3 2`` prints the probabilities; ``logsumexp``, ``sample``,
``sparsemax``, ``entmax``, ``plot KIND -o FILE`` and ``bandit`` are subcommands
(``softmax --help`` lists them; ``softmax --version`` prints the version). Every
command is one function registered with :func:`command`; it names the argument
groups it takes and returns an :class:`Output` (or writes its own file and
returns None). Reading the input, checking it, rendering it as a table, plain
text, JSON or CSV, and writing a file whole or not at all are shared by all
commands.

Errors of usage (an unparsable number, an unknown format or command, a missing
file or folder, a file that is not what its extension says, rows of different
lengths, a NaN or negative temperature, an option out of range such as
``--top-p 1.5``, an output file that is read-only without ``--force``) print one
line ``softmax: error: ...`` naming the argument and exit with status 2; a
computation or a write that fails (out of memory, a full disk, a closed standard
output) prints one such line and exits with status 1. That includes input the
library refuses once it looks at the numbers: ``softmax sample`` on a row with no
allowed entry (all ``-inf``, or NaN), or ``-n`` larger than a row's allowed
entries with ``--no-replace``, exits 1 with the library's message naming the row.
SIGINT, SIGTERM and SIGHUP remove the temporary file of an output being written
and exit with status 128 + the signal's number.
Nothing is imported beyond NumPy and the library until it is needed: ``rich``
only to draw a table, matplotlib only to plot.

A new subcommand is one registered function (integer results, such as drawn
indices, print as integers; ``run_sample`` in ``_sample_command`` is the full example)::

    def _argmax_arguments(parser):
        parser.add_argument("--top", type=int, default=1)

    @command("argmax", help="indices of the largest scores",
             arguments=(input_arguments, _argmax_arguments, output_arguments))
    def run_argmax(args):
        x = load_input(args)
        return Output(_compute(np.argsort, -x)[..., : args.top])

The modules: ``_core`` (the registry, :class:`Output`, the errors, the formats),
``_arguments`` (the shared argument groups and types, checked by ``_lib._validation``),
``_input`` and ``_output`` (reading the scores, writing the results), ``_tables``
(the terminal tables), one module per command group (``_softmax_commands``,
``_plot_command``, ``_sample_command``, ``_sparse_commands``, ``_bandit_command``,
``_calibrate_command``) and ``_main`` (the parser, the run, the exit statuses).

Examples
--------
>>> from softmaxkit.cli import main
>>> main(["1", "3", "2", "--format", "plain", "--precision", "4"])
0.09003 0.6652 0.2447
0
>>> main(["logsumexp", "1", "3", "2", "--format", "plain"])
3.40760596444438
0
>>> main(["sample", "1", "3", "2", "-n", "5", "--seed", "0"])
1 1 0 0 2
0
>>> main(["sparsemax", "1", "3", "2.5", "--format", "plain"])
0.0 0.75 0.25
0
"""

from __future__ import annotations

# The commands register themselves on import, in the order ``softmax --help`` lists them.
# isort: off
from . import _softmax_commands  # noqa: F401
from . import _plot_command  # noqa: F401
from . import _sample_command  # noqa: F401
from . import _sparse_commands  # noqa: F401
from . import _bandit_command  # noqa: F401
from . import _calibrate_command  # noqa: F401

# isort: on

# The names of the former module softmaxkit/cli.py (commands and tests use them).
from ._arguments import (  # noqa: F401
    axis_argument,
    force_argument,
    input_arguments,
    integer_output_arguments,
    output_arguments,
    temperature_argument,
)
from ._bandit_command import run_bandit  # noqa: F401
from ._calibrate_command import calibrate_arguments, run_calibrate  # noqa: F401
from ._core import (  # noqa: F401
    BAR_WIDTH,
    COMMANDS,
    DEFAULT_COMMAND,
    FILE_FORMATS,
    INPUT_FORMATS,
    PLOT_FORMATS,
    PROG,
    TABLE_PRECISION,
    TABLE_ROWS,
    TEXT_FORMATS,
    Command,
    ComputationError,
    Output,
    UsageError,
    command,
)
from ._input import load_input, parse_csv, parse_rows  # noqa: F401
from ._main import build_parser, main  # noqa: F401
from ._output import (  # noqa: F401
    check_output_path,
    print_output,
    render_text,
    write_atomically,
    write_output,
)
from ._plot_command import run_plot  # noqa: F401
from ._sample_command import run_sample  # noqa: F401
from ._softmax_commands import run_logsumexp, run_softmax  # noqa: F401
from ._sparse_commands import run_entmax, run_sparsemax  # noqa: F401
from ._tables import bar  # noqa: F401

__all__ = ["main", "command", "Output", "UsageError", "ComputationError"]
