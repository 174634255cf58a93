"""``llm-inductor verify`` on files that are not text: a usage error naming the file, never an internal error."""

from __future__ import annotations

import pytest

from llm_inductor.cli import main
from support.paths import KERNELS, REGIONS

REGION = REGIONS / "region_softmax.py"
CANDIDATE = KERNELS / "softmax.py"
BINARY = b"\x7fELF\x02\x01\x01\x00\xff\xfe" + bytes(range(256))


@pytest.mark.parametrize("which", ["candidate", "region"])
def test_a_binary_file_is_exit_2_naming_it(tmp_path, capsys, which):
    binary = tmp_path / f"{which}.py"
    binary.write_bytes(BINARY)
    args = [str(REGION), str(binary)] if which == "candidate" else [str(binary), str(CANDIDATE)]
    assert main(["verify", *args]) == 2
    err = capsys.readouterr().err
    assert f"{which} file {binary} is not UTF-8 text (byte 0xff at offset 8)" in err and "internal error" not in err
