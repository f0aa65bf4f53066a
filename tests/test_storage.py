"""Saved networks: a round trip, and every damaged or hostile description refused in our words
(a ``ValueError`` naming the file) before any of it runs."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm import nets, storage
from numpyro_ebm._checks import check_output_path

SPEC = {"network": "NoiseConditionalMLP", "event_shape": [2], "hidden": [8]}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved") / "network"
    network = storage.build_network(SPEC, seed=3)
    storage.save_network(directory, network, SPEC, {"objective": "ncsn"})
    return directory, network


def edited(saved, tmp_path, **changes):
    """A copy of the saved network whose network.json has ``changes`` applied."""
    directory, _ = saved
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "state").symlink_to(directory / "state")
    record = json.loads((directory / "network.json").read_text())
    for key, value in changes.items():
        if key in record:
            record[key] = value
        else:
            record["spec"][key] = value
    (copy / "network.json").write_text(json.dumps(record))
    return copy


def test_a_saved_network_loads_back_equal(saved):
    directory, network = saved
    loaded, spec, metadata = storage.load_network(directory)
    x, sigma = jnp.array([0.3, -1.2]), jnp.float32(0.5)
    np.testing.assert_array_equal(loaded(x, sigma), network(x, sigma))
    assert spec == SPEC and metadata == {"objective": "ncsn"}


def test_a_description_without_its_arrays_is_refused_as_incomplete(saved, tmp_path):
    # it was refused as arrays "saved with other layer sizes", after Orbax's warnings
    copy = edited(saved, tmp_path)
    (copy / "state").unlink()
    with pytest.raises(FileNotFoundError, match=r"holds a network description but no arrays"):
        storage.load_network(copy)


@pytest.mark.parametrize("name", ["display", "getattr", "Linear", "__class__", "", 3])
def test_an_activation_outside_the_allow_list_is_refused(saved, tmp_path, name):
    with pytest.raises(ValueError, match=r"network.json: activation must be one of \[.*silu"):
        storage.load_network(edited(saved, tmp_path, activation=name))


def test_every_allowed_activation_is_an_elementwise_function():
    x = jnp.linspace(-2.0, 2.0, 5)
    for name, fn in nets.ACTIVATIONS.items():
        assert fn(x).shape == x.shape and nets.activation(name) is fn


@pytest.mark.parametrize("version", [2, 0, "1", None, True])
def test_another_format_is_refused(saved, tmp_path, version):
    with pytest.raises(ValueError, match=r"has format .*; this numpyro-ebm reads format 1"):
        storage.load_network(edited(saved, tmp_path, format=version))


@pytest.mark.parametrize(
    "change",
    [{"hidden": [16]}, {"hidden": [8, 8]}, {"output": "score"}, {"network": "MLPEnergy"}],
    ids=["wider", "deeper", "score", "class"],
)
def test_arrays_that_do_not_fit_the_description_are_refused_in_one_sentence(
    saved, tmp_path, change
):
    with pytest.raises(ValueError) as raised:
        storage.load_network(edited(saved, tmp_path, **change))
    message = str(raised.value)
    assert message.startswith("the arrays in ") and "do not fit the network described" in message
    assert "\n" not in message and "Orbax" not in message and "strict=False" not in message


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden": [1.5]}, r"spec\['hidden'\] must be an integer, got 1.5"),
        ({"hidden": [0]}, r"spec\['hidden'\] must be an integer >= 1, got 0"),
        ({"hidden": [True]}, r"spec\['hidden'\] must hold positive integers, got True"),
        ({"event_shape": "ab"}, r"spec\['event_shape'\] must be a list of positive integers"),
        ({"num_features": -1}, r"spec\['num_features'\] must be an integer >= 1"),
        ({"network": "os.system"}, r"unknown network 'os.system'"),
        ({"output": "both"}, r"output must be 'energy' or 'score'"),
        ({"dropout": 0.5}, r"bad arguments for NoiseConditionalMLP"),
        ({"spec": [1, 2]}, r"'spec' and 'metadata' must be JSON objects"),
    ],
)
def test_bad_specs_are_refused_naming_the_file(saved, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        storage.load_network(edited(saved, tmp_path, **change))


def test_a_missing_or_garbled_description_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no saved network"):
        storage.load_network(tmp_path)
    (tmp_path / "network.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="is not a saved network's description"):
        storage.load_network(tmp_path)


def test_saving_under_a_file_or_onto_a_file_is_refused_before_writing(saved, tmp_path):
    _, network = saved
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"directory '.*afile/net' lies under '.*afile'"):
        storage.save_network(tmp_path / "afile" / "net", network, SPEC)
    with pytest.raises(ValueError, match=r"directory '.*afile' is a file, not a folder"):
        storage.save_network(tmp_path / "afile", network, SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_saving_into_a_read_only_folder_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"cannot be written: a file cannot be created in"):
            check_output_path("directory", tmp_path / "net", folder=True)
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="no sysfs mount here")
def test_a_folder_that_refuses_writes_even_to_root_is_refused_before_any_work():
    # probe row: os.access says yes to root, then the write failed after the whole run (sysfs)
    with pytest.raises(ValueError, match=r"'/sys/o' cannot be written: a file cannot be created"):
        check_output_path("--out", "/sys/o", folder=False)


@pytest.mark.parametrize(
    "path, folder, message",
    [
        (3, True, "directory must be a path"),
        ("", True, "directory must be a non-empty path"),
        (".", False, "is a folder; give a file name"),
    ],
)
def test_output_paths_of_the_wrong_kind_are_refused(path, folder, message):
    with pytest.raises((TypeError, ValueError), match=message):
        check_output_path("directory", path, folder=folder)
