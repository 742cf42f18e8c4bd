"""Built-in data sources; importing this package registers them."""

from mmlearn.data.sources import (  # noqa: F401
    avdigits,
    mfeat,
    mmin_h5,
    mmsa,
    mult_pkl,
    multibench_mimic,
    sdk_csd,
    synthetic,
)
