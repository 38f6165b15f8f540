"""The one content-keyed store behind the face crops, the landmark tracks and the intensities."""

import numpy as np
import pytest

from dfer_pd.common.files import NpzStore, content_key


def test_store_round_trips_arrays_under_its_key(tmp_path):
    store = NpzStore(tmp_path, content_key({"settings": {"fps": 5}}))
    assert not store.has("abc")
    store.write("abc", points=np.arange(6.0).reshape(2, 3), note=np.asarray("text"))
    assert store.has("abc") and store.path("abc") == tmp_path / store.key / "abc.npz"
    read = store.read("abc")
    np.testing.assert_array_equal(read["points"], np.arange(6.0).reshape(2, 3))
    assert str(read["note"]) == "text"
    other = NpzStore(tmp_path, content_key({"settings": {"fps": 6}}))  # other settings: another folder
    assert other.folder != store.folder and not other.has("abc")


def test_an_interrupted_write_leaves_no_file(tmp_path):
    store = NpzStore(tmp_path, "k")

    class Unsavable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        store.write("abc", broken=Unsavable())
    assert not store.has("abc") and list(store.folder.iterdir()) == []  # no half-written or temporary file
