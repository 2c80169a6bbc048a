"""The range-checked argparse converters of the command line (defined in prunekit.utils.argtypes, where the
benchmark scripts' parsers use them too)."""
from ..utils.argtypes import (bits, bits_or_off, count_or_fraction, device, float_between, fraction,  # noqa: F401
                              int_between, keep_fraction, nonneg_float, nonneg_int, num_classes, open_fraction,
                              positive_float, positive_int)
