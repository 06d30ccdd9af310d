import pytest

from ssps.data.manifest import read_manifest
from ssps.errors import SSPSError


def test_missing_and_binary_manifests_are_one_line_errors(tmp_path):
    with pytest.raises(SSPSError, match="manifest not found"):
        read_manifest(tmp_path / "nope.tsv")
    binary = tmp_path / "m.tsv"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(SSPSError, match="m.tsv: manifest is not a text file"):
        read_manifest(binary)
