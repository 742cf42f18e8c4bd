"""Built-in data sources; importing this package registers them."""

from mmlearn.data.sources import mfeat, synthetic  # noqa: F401
