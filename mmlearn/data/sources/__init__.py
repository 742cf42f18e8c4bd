"""Built-in data sources; importing this package registers them."""

from mmlearn.data.sources import avdigits, mfeat, mmin_h5, mmsa, mult_pkl, sdk_csd, synthetic  # noqa: F401
