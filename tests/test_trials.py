"""Trial lists: both formats, malformed lines, round trip, file checks."""

import numpy as np
import pytest

from ssps.data.trials import check_files, read_trials, resolve_files, write_trials
from ssps.errors import SSPSError
from ssps.utils.files import sha256

VOX = "1 id10270/x6u/00001.wav id10270/8jE/00008.wav\n0 id10270/x6u/00001.wav id10300/ize/00012.wav\n"
KALDI = (
    "id10270/x6u/00001.wav id10270/8jE/00008.wav target\n"
    "id10270/x6u/00001.wav id10300/ize/00012.wav nontarget\n"
)


@pytest.mark.parametrize("text", [VOX, KALDI, "\n" + VOX + "\n\n"])
def test_formats_read_the_same(tmp_path, text):
    path = tmp_path / "trials.txt"
    path.write_text(text)
    t = read_trials(path)
    assert t.enroll == ["id10270/x6u/00001.wav"] * 2
    assert t.test == ["id10270/8jE/00008.wav", "id10300/ize/00012.wav"]
    assert t.labels.dtype == np.bool_ and t.labels.tolist() == [True, False]
    assert (t.n_target, t.n_nontarget, len(t)) == (1, 1, 2)
    assert t.sha256 == sha256(path) and t.path == path
    assert t.files() == ["id10270/8jE/00008.wav", "id10270/x6u/00001.wav", "id10300/ize/00012.wav"]


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    enroll = [f"s{i % 7}/a/{i}.wav" for i in range(50)]
    test = [f"s{i % 5}/b/{i}.flac" for i in range(50)]
    labels = rng.random(50) < 0.5
    write_trials(tmp_path / "t.txt", enroll, test, labels)
    t = read_trials(tmp_path / "t.txt")
    assert t.enroll == enroll and t.test == test
    np.testing.assert_array_equal(t.labels, labels)
    sub = t.subset(np.array([3, 1]))
    assert sub.enroll == [enroll[3], enroll[1]] and sub.labels.tolist() == [labels[3], labels[1]]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (VOX + "2 a.wav b.wav\n", ":3:", "VoxCeleb"),
        (VOX + "1 a.wav\n", ":3:", "VoxCeleb"),
        (VOX + "a.wav b.wav target\n", ":3:", "VoxCeleb"),  # formats do not mix within a file
        (KALDI + "a.wav b.wav yes\n", ":3:", "Kaldi"),
        (KALDI + "\n1 a.wav b.wav\n", ":4:", "Kaldi"),
        ("a.wav b.wav\n", ":1:", "unknown trial format"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, text, where, what):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(SSPSError, match=what) as e:
        read_trials(path)
    assert f"bad.txt{where}" in str(e.value) and "\n" not in str(e.value)


def test_missing_and_empty(tmp_path):
    with pytest.raises(SSPSError, match="not found"):
        read_trials(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SSPSError, match="no trials"):
        read_trials(tmp_path / "empty.txt")


def test_write_rejects_bad_ids(tmp_path):
    with pytest.raises(SSPSError, match="whitespace"):
        write_trials(tmp_path / "t.txt", ["a b.wav"], ["c.wav"], [True])
    with pytest.raises(SSPSError, match="differ in length"):
        write_trials(tmp_path / "t.txt", ["a.wav"], ["c.wav", "d.wav"], [True])
    assert not (tmp_path / "t.txt").exists()


def test_check_files(tmp_path):
    names = [f"spk/s/{i}.wav" for i in range(8)]
    write_trials(tmp_path / "t.txt", names[:4], names[4:], [1, 0, 1, 0])
    t = read_trials(tmp_path / "t.txt")
    root = tmp_path / "audio"
    (root / "spk/s").mkdir(parents=True)
    (root / "spk/s/0.wav").write_bytes(b"x")
    with pytest.raises(SSPSError) as e:
        check_files(t, root)
    msg = str(e.value)
    assert "7 of 8 audio files missing" in msg
    assert str(root / "spk/s/1.wav") in msg and str(root / "spk/s/5.wav") in msg
    assert str(root / "spk/s/6.wav") not in msg and msg.endswith(", ...")  # first 5 only
    for i in range(1, 8):
        (root / f"spk/s/{i}.wav").write_bytes(b"x")
    check_files(t, root)
    ids, paths = resolve_files(t, root)
    assert ids == sorted(names) and paths == [root / n for n in ids]
    with pytest.raises(SSPSError, match="root folder not found"):
        check_files(t, tmp_path / "nowhere")
