"""Human evaluation of unrestricted adversarial examples (``advaug label``).

An unrestricted adversarial example counts only if a person still sees its source class. This
package builds a labelling set from a UAE dataset (the UAEs mixed with clean GAN samples of the
same codes and real test images, in a seeded order), serves a local page on which raters name
the class of each image, stores every answer in SQLite as it is given, exports and imports crowd
batches, and compares what people said with the automatic proxy.

Modules: ``source`` (what SOURCE means, building a set), ``items`` (the controls and the order),
``store`` (the SQLite file), ``server`` (the page), ``crowd`` (CSV export and import),
``analysis`` (legitimacy, baselines, Wilson intervals, agreement, proxy against humans).
Serving and analysis need neither torch models nor the data: the set holds its images.
"""

from advaug.label.analysis import format_summary, summarize
from advaug.label.crowd import export_batch, import_results
from advaug.label.server import LabelServer
from advaug.label.source import BuildOptions, Loaders, open_or_build, resolve_source
from advaug.label.store import LabelInputError, LabelStore, check_rater

__all__ = [
    "BuildOptions",
    "LabelInputError",
    "LabelServer",
    "LabelStore",
    "Loaders",
    "check_rater",
    "export_batch",
    "format_summary",
    "import_results",
    "open_or_build",
    "resolve_source",
    "summarize",
]
