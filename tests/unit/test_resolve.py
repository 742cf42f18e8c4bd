import pytest

from mmlearn.data.resolve import cached_store_path, resolve_store
from mmlearn.errors import DataError


def test_a_source_name_is_prepared_once_into_the_cache(tmp_path):
    options = {"views": ["fac", "mor"]}
    store = resolve_store("mfeat", options, cache=tmp_path)
    assert store.path == cached_store_path("mfeat", options, tmp_path)
    assert store.names == ("fac", "mor")
    stamp = (store.path / "manifest.json").stat().st_mtime_ns
    again = resolve_store("mfeat", options, cache=tmp_path)
    assert (again.path / "manifest.json").stat().st_mtime_ns == stamp
    other = resolve_store("mfeat", {"views": ["fou", "mor"]}, cache=tmp_path)
    assert other.path != store.path


def test_a_store_directory_is_opened_as_it_is(mfeat_path, tmp_path):
    assert resolve_store(mfeat_path, cache=tmp_path).path == mfeat_path
    assert not any(tmp_path.iterdir())
    with pytest.raises(DataError, match="is a prepared store; source options"):
        resolve_store(mfeat_path, {"seed": 1}, cache=tmp_path)


def test_neither_a_store_nor_a_source(tmp_path):
    with pytest.raises(DataError, match=r"'mosei' is neither a feature store directory nor a"):
        resolve_store("mosei", cache=tmp_path)
